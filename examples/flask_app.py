"""The example app on Flask, runnable from a checkout: ``flask --app examples.flask_app run``.

Its code lives in ``replicate_audio.examples`` (see ``src/replicate_audio/examples/flask_app.py``).
Configure it with the environment variables of docs/configuration.md.
"""

from replicate_audio.examples.flask_app import create_app

app = create_app()
