"""The example app on FastAPI, runnable from a checkout: ``uvicorn examples.fastapi_app:app``.

Its code lives in ``replicate_audio.examples`` so that ``replicate-audio demo`` can run it from
an installed package; read ``src/replicate_audio/examples/fastapi_app.py`` for the routes and
``src/replicate_audio/examples/catalog.py`` for the processors that write the app's tables.
Configure it with the environment variables of docs/configuration.md.
"""

from replicate_audio.examples.fastapi_app import create_app

app = create_app()
