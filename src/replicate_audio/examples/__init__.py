"""The app this library grew out of, small, on FastAPI and on Flask; ``replicate-audio demo``
runs the FastAPI one."""
