"""uvicorn's entry point: `uvicorn fastapi_users_peer.app:app --workers 2`."""

# mypy: ignore-errors
# ruff: noqa: B008  (FastAPI declares dependencies as argument defaults)
# (its libraries live in bench/.venv-fastapi only)

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, exceptions, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "sqlite+aiosqlite:///./peer.sqlite3")
SECRET = os.environ.get("PEER_SECRET_KEY", "peer-secret-not-for-production")
DOMAIN = "example.com"  # FastAPI-Users logs users in by email: name@example.com


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


engine = create_async_engine(DATABASE_URL)
session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def create_tables() -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)


async def get_async_session() -> AsyncIterator[AsyncSession]:
    async with session_maker() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyUserDatabase(session, User)


async def get_access_token_db(session: AsyncSession = Depends(get_async_session)):
    yield SQLAlchemyAccessTokenDatabase(session, AccessToken)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager(user_db=Depends(get_user_db)):
    yield UserManager(user_db)


def get_database_strategy(access_token_db=Depends(get_access_token_db)) -> DatabaseStrategy:
    return DatabaseStrategy(access_token_db, lifetime_seconds=12 * 3600)


cookie_transport = CookieTransport(cookie_max_age=12 * 3600, cookie_secure=False)
auth_backend = AuthenticationBackend(
    name="cookie", transport=cookie_transport, get_strategy=get_database_strategy
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])
current_user = fastapi_users.current_user(optional=True, active=True)

app = FastAPI()
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/cookie")
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth")
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _name(user: User) -> str:
    return user.email.split("@", 1)[0]


async def _logged_in(strategy: DatabaseStrategy, user: User) -> Response:
    """The backend's login (a token row, the cookie), as a redirect to the index."""
    done = await auth_backend.login(strategy, user)
    response = RedirectResponse("/index/", status_code=303)
    for key, value in done.raw_headers:
        if key == b"set-cookie":
            response.raw_headers.append((key, value))
    return response


@app.get("/index/", response_class=HTMLResponse)
async def index(request: Request, user: User | None = Depends(current_user)) -> Response:
    if user is None:
        return RedirectResponse(f"/login/?next={quote('/index/', safe='')}", status_code=302)
    return templates.TemplateResponse(request, "index.html", {"name": _name(user)})


@app.get("/login/", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "form.html", {"title": "Log in", "confirm": False})


@app.post("/login/")
async def login(
    request: Request,
    username: str = Form(),
    password: str = Form(),
    manager: UserManager = Depends(get_user_manager),
    strategy: DatabaseStrategy = Depends(auth_backend.get_strategy),
) -> Response:
    credentials = SimpleNamespace(username=f"{username}@{DOMAIN}", password=password)
    user = await manager.authenticate(credentials)
    if user is None or not user.is_active:
        context = {"title": "Log in", "confirm": False, "error": "Invalid username or password"}
        return templates.TemplateResponse(request, "form.html", context, status_code=400)
    return await _logged_in(strategy, user)


@app.get("/register/", response_class=HTMLResponse)
async def register_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "form.html", {"title": "Register", "confirm": True})


@app.post("/register/")
async def register(
    request: Request,
    username: str = Form(),
    password: str = Form(),
    password_confirm: str = Form(),
    manager: UserManager = Depends(get_user_manager),
    strategy: DatabaseStrategy = Depends(auth_backend.get_strategy),
) -> Response:
    error = "Passwords must match" if password != password_confirm else None
    if error is None:
        try:
            created = UserCreate(email=f"{username}@{DOMAIN}", password=password)
            user = await manager.create(created, safe=True, request=request)
        except (exceptions.UserAlreadyExists, exceptions.InvalidPasswordException):
            error = "That username cannot be used"
    if error is not None:
        context = {"title": "Register", "confirm": True, "error": error}
        return templates.TemplateResponse(request, "form.html", context, status_code=400)
    return await _logged_in(strategy, user)


@app.post("/logout/")
async def logout(
    user: User | None = Depends(current_user),
    strategy: DatabaseStrategy = Depends(auth_backend.get_strategy),
    request: Request = None,
) -> Response:
    response = RedirectResponse("/login/", status_code=303)
    token = request.cookies.get(cookie_transport.cookie_name) if request else None
    if user is not None and token:
        await strategy.destroy_token(token, user)
    response.delete_cookie(cookie_transport.cookie_name)
    return response
