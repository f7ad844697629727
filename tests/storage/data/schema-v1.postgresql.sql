-- Made by replicate-audio at schema version 1 (commit 27ef352) with pg_dump, for the migration test.
CREATE TABLE v1fixture_audio (
    content_type character varying(255) NOT NULL,
    content_id character varying(255) NOT NULL,
    job_id character varying(255) NOT NULL,
    format character varying(32) NOT NULL,
    duration double precision NOT NULL,
    size bigint NOT NULL,
    data bytea NOT NULL,
    created_at timestamp with time zone NOT NULL
);
CREATE TABLE v1fixture_deliveries (
    webhook_id character varying(255) NOT NULL,
    job_id character varying(255) NOT NULL,
    created_at timestamp with time zone NOT NULL
);
CREATE TABLE v1fixture_jobs (
    id character varying(255) NOT NULL,
    content_type character varying(255) NOT NULL,
    content_id character varying(255) NOT NULL,
    status character varying(16) NOT NULL,
    attempts integer NOT NULL,
    error text,
    config json,
    prediction json,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);
CREATE TABLE v1fixture_logs (
    seq integer NOT NULL,
    job_id character varying(255) NOT NULL,
    content_type character varying(255) NOT NULL,
    content_id character varying(255) NOT NULL,
    status character varying(16) NOT NULL,
    message text NOT NULL,
    duration double precision,
    size bigint,
    created_at timestamp with time zone NOT NULL
);
CREATE SEQUENCE v1fixture_logs_seq_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE v1fixture_logs_seq_seq OWNED BY v1fixture_logs.seq;
ALTER TABLE ONLY v1fixture_logs ALTER COLUMN seq SET DEFAULT nextval('v1fixture_logs_seq_seq'::regclass);
INSERT INTO v1fixture_audio VALUES ('background_music', '3', 'donepredictionid0000000003', 'wav', 0.1, 1644, '\x524946466406000057415645666d74201000000001000100401f0000803e0000020010006461746140060000e80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fce80318fc', '2026-12-02 07:29:05.156794+00');
INSERT INTO v1fixture_deliveries VALUES ('msg_run', 'runningpredictionid0000002', '2026-12-02 07:29:05.146485+00');
INSERT INTO v1fixture_deliveries VALUES ('msg_done', 'donepredictionid0000000003', '2026-12-02 07:29:05.15078+00');
INSERT INTO v1fixture_jobs VALUES ('pendingpredictionid0000001', 'sound_effect', '1', 'pending', 0, NULL, '{"version": null, "model": "stability-ai/stable-audio-2.5", "input": {"prompt": "rain", "duration": 2}, "duration": 1.0, "webhook_events_filter": ["start", "completed"]}', NULL, '2026-12-02 07:29:05.132713+00', '2026-12-02 07:29:05.13272+00');
INSERT INTO v1fixture_jobs VALUES ('runningpredictionid0000002', 'sound_effect', '2', 'running', 0, NULL, '{"version": null, "model": "stability-ai/stable-audio-2.5", "input": {"prompt": "rain", "duration": 2}, "duration": 1.0, "webhook_events_filter": ["start", "completed"]}', '{"id": "runningpredictionid0000002", "status": "processing"}', '2026-12-02 07:29:05.144484+00', '2026-12-02 07:29:05.147515+00');
INSERT INTO v1fixture_jobs VALUES ('donepredictionid0000000003', 'background_music', '3', 'completed', 1, NULL, '{"version": null, "model": "stability-ai/stable-audio-2.5", "input": {"prompt": "rain", "duration": 2}, "duration": 1.0, "webhook_events_filter": ["start", "completed"]}', '{"id": "donepredictionid0000000003", "status": "succeeded", "output": "https://replicate.delivery/x/out.wav"}', '2026-12-02 07:29:05.149285+00', '2026-12-02 07:29:05.172431+00');
INSERT INTO v1fixture_logs VALUES (1, 'donepredictionid0000000003', 'background_music', '3', 'completed', 'stored', NULL, NULL, '2026-12-02 07:29:05.162304+00');
SELECT pg_catalog.setval('v1fixture_logs_seq_seq', 1, true);
ALTER TABLE ONLY v1fixture_audio
    ADD CONSTRAINT v1fixture_audio_pkey PRIMARY KEY (content_type, content_id);
ALTER TABLE ONLY v1fixture_deliveries
    ADD CONSTRAINT v1fixture_deliveries_pkey PRIMARY KEY (webhook_id);
ALTER TABLE ONLY v1fixture_jobs
    ADD CONSTRAINT v1fixture_jobs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY v1fixture_logs
    ADD CONSTRAINT v1fixture_logs_job_id_status_key UNIQUE (job_id, status);
ALTER TABLE ONLY v1fixture_logs
    ADD CONSTRAINT v1fixture_logs_pkey PRIMARY KEY (seq);
CREATE INDEX v1fixture_jobs_status_updated_at ON v1fixture_jobs USING btree (status, updated_at);
