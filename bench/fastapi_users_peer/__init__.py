"""FastAPI-Users, the async peer: what an async Python developer would pick instead.

Written as its documentation sets it up: the cookie transport with the database strategy
(access tokens in a table), SQLAlchemy's async engine on SQLite (aiosqlite), its own
password helper (pwdlib, argon2id with its defaults), under `uvicorn --workers 2` with
uvloop and httptools (uvicorn's "standard" extras). FastAPI-Users is an API; the tutorial's
pages (/login/ /register/ /index/ /logout/) are thin Jinja2 routes over its user manager and
authentication backend. It runs from its own virtualenv, bench/.venv-fastapi, and is never
imported by the benchmark itself.
"""
