"""The JSON API: the same accounts service and sessions as the pages, for programs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, TypeVar, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictStr,
)
from pydantic_core import PydanticCustomError
from quart import Blueprint, Quart, ResponseReturnValue, request
from quart_babel import gettext as _
from quart_schema import (
    OpenAPIProvider,
    QuartSchema,
    RequestSchemaValidationError,
    document_response,
    security_scheme,
    validate_request,
    validate_response,
)
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    NotFound,
    UnprocessableEntity,
    UnsupportedMediaType,
)
from werkzeug.routing import Rule

from . import accounts, devices, docs, security, sessions, tokens, two_factor
from .errors import http_error
from .i18n import _l
from .login import (
    client_address,
    current_session,
    current_user,
    login_fresh,
    login_required,
    login_user,
    logout_user,
)
from .models import User

bp = Blueprint("api", __name__, url_prefix="/api")
F = TypeVar("F", bound=Callable[..., Any])

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Ids are 32-bit integers in every database: a larger one names nothing (404).
ID_MAX = 2**31 - 1
PAGE_SIZE = 50
SESSION: dict[str, list[str]] = {"session": []}
TOKEN: dict[str, list[str]] = {"token": []}


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError(NUL_ERROR, "NUL characters are not allowed.")
    return value


NUL_ERROR = "nul_character"
# Text no client sends on purpose: a NUL is a 400, like a malformed body, not a 422.
Text = Annotated[StrictStr, AfterValidator(_no_nul)]


class Input(BaseModel):
    # Unknown fields ("id", "is_admin", ...) are ignored; strings are never coerced.
    model_config = ConfigDict(extra="ignore")


class Credentials(Input):
    username: Text = Field(max_length=4096)
    password: Text = Field(max_length=4096)


class RegisterIn(Credentials):
    email: Text | None = Field(default=None, max_length=4096)


class LoginIn(Credentials):
    remember: StrictBool = False


class TokenIn(Input):
    name: Text = Field(min_length=1, max_length=64)
    password: Text = Field(max_length=4096)


class UserOut(BaseModel):
    id: int
    username: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, created_at=user.created_at)


class MeOut(UserOut):
    authenticated_by: str = Field(description='"session" (cookie) or "token" (bearer)')


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The bearer token; shown only in this response.")


class TokenList(BaseModel):
    tokens: list[TokenOut]


class SessionOut(BaseModel):
    id: int
    device: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    remember: bool
    current: bool = Field(description="The session this request was made with.")


class SessionList(BaseModel):
    sessions: list[SessionOut]
    next_page: int | None = Field(description="The page after this one (`?page=`), if any.")


class EndedOut(BaseModel):
    ended: int


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    error: str
    message: str
    details: list[FieldError] | None = None


class ValidationFailed(UnprocessableEntity):
    """The body was JSON but not what the route expects; `details` names each field."""

    error_code = "validation_error"

    def __init__(self, message: str, details: Iterable[FieldError]) -> None:
        super().__init__(message)
        self.details = list(details)


class InvalidText(BadRequest):
    error_code = "invalid_field"

    def __init__(self, message: str, details: Iterable[FieldError]) -> None:
        super().__init__(message)
        self.details = list(details)


class InvalidJson(BadRequest):
    error_code = "invalid_json"
    description = _l("The request body is not valid JSON (UTF-8).")


class CrossSite(Forbidden):
    error_code = "cross_site_request"
    description = _l("State-changing API requests must come from this site or carry a token.")


class NotFresh(Forbidden):
    error_code = "reauthentication_required"
    description = _l("This session was restored from a remember cookie: log in again first.")


class WrongPassword(Forbidden):
    error_code = "wrong_password"
    description = _l("The password is not correct.")


def errors(*codes: int) -> Callable[[F], F]:
    """Document the JSON error bodies a route can answer with."""

    def decorator(func: F) -> F:
        for code in codes:
            func = document_response(ErrorOut, code)(func)
        return func

    return decorator


class NoContent(BaseModel):
    """Done; the response has no body."""


class ApiOnlyProvider(OpenAPIProvider):
    """Document the JSON API; the HTML pages are not part of it."""

    def generate_rules(self) -> Iterable[Rule]:
        return (rule for rule in super().generate_rules() if rule.rule.startswith("/api/"))

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No content"}, {}
        return super().build_response_object(model, headers_model)


def init_app(app: Quart) -> None:
    QuartSchema(
        app,
        info={"title": "quart_app", "version": "1"},
        security_schemes={
            "session": {"type": "apiKey", "in_": "cookie", "name": app.config["AUTH_COOKIE_NAME"]},
            "token": {"type": "http", "scheme": "bearer"},
        },
        swagger_ui_path=None,  # served by docs.py from local files, not a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=ApiOnlyProvider,
    )
    # Their routes join bp on import, which must come before bp is registered.
    from . import api_recovery, api_two_factor

    del api_recovery, api_two_factor
    app.register_blueprint(bp)
    app.register_blueprint(docs.bp)


@bp.before_request
async def refuse_cross_site() -> None:
    """Let a cross-site page change nothing: JSON bodies only, and no foreign origin."""
    if request.method not in UNSAFE_METHODS:
        return
    has_body = bool(await request.get_data())  # bounded by MAX_CONTENT_LENGTH (413)
    if (has_body or request.mimetype) and request.mimetype != "application/json":
        raise UnsupportedMediaType(_("Send the body as Content-Type: application/json."))
    if has_body:
        try:
            await request.get_json()  # parsed once here, cached for the view
        except (BadRequest, UnicodeDecodeError, RecursionError):
            raise InvalidJson() from None
    if _by_token():
        return  # a bearer token is never sent by a browser on its own
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise CrossSite()
    if not security.same_origin(request):
        raise CrossSite()


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_body(error: RequestSchemaValidationError) -> ResponseReturnValue:
    problems: list[dict[str, Any]] = getattr(error.validation_error, "errors", list)()
    details = [
        FieldError(field=".".join(str(p) for p in problem["loc"]) or "body", message=problem["msg"])
        for problem in problems
    ]
    if any(problem["type"] == NUL_ERROR for problem in problems):
        return await http_error(InvalidText(_("The request body is not valid."), details))
    return await http_error(ValidationFailed(_("The request body is not valid."), details))


@bp.post("/register")
@validate_request(RegisterIn)
@validate_response(UserOut, 201)
@errors(400, 409, 413, 415, 422, 429)
async def register(data: RegisterIn) -> tuple[UserOut, int]:
    """Create an account and log in (the session cookie is set); `email` is optional."""
    try:
        user = await accounts.register(
            data.username, data.password, client=client_address(), email=data.email
        )
    except accounts.InvalidField as error:
        raise ValidationFailed(
            str(error.description), [FieldError(field=error.field, message=str(error.description))]
        ) from None
    await login_user(user)
    return UserOut.of(user), 201


class SecondFactorOut(BaseModel):
    mfa_required: bool = Field(description="Always true: finish at `/api/login/two-factor`.")
    methods: list[str] = Field(description='"totp", "recovery_code", "passkey"')


class LoginOut(RootModel[UserOut | SecondFactorOut]):
    """The user, logged in; or, with two-factor on, what the second step accepts."""


@bp.post("/login")
@validate_request(LoginIn)
@validate_response(LoginOut, 200)
@errors(400, 401, 413, 415, 422, 429)
async def login(data: LoginIn) -> LoginOut:
    """Log in; the session cookie is set (for 30 days with `remember`).

    With two-factor on, no session yet: `mfa_required` and a pending cookie for the second step.
    """
    user = await accounts.authenticate(data.username, data.password, client=client_address())
    methods = await two_factor.require_second_step(user, remember=data.remember, next_url="")
    if methods:
        return LoginOut(SecondFactorOut(mfa_required=True, methods=methods))
    await login_user(user, remember=data.remember)
    return LoginOut(UserOut.of(user))


@bp.post("/logout")
@login_required
@security_scheme([SESSION, TOKEN])
@document_response(NoContent, 204)
@errors(401, 403, 415)
async def logout() -> tuple[str, int]:
    """End this session on the server (or, with a bearer token, revoke that token)."""
    user = _user()
    if user.api_token is not None:
        await tokens.revoke(user, user.api_token.id)
    else:
        await logout_user()
    return "", 204


@bp.get("/me")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(MeOut, 200)
@errors(401)
async def me() -> MeOut:
    """The logged-in user."""
    user = _user()
    return MeOut(
        **UserOut.of(user).model_dump(),
        authenticated_by="token" if user.api_token is not None else "session",
    )


@bp.post("/tokens")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(TokenIn)
@validate_response(TokenCreatedOut, 201)
@errors(400, 401, 403, 413, 415, 422, 429)
async def create_token(data: TokenIn) -> tuple[TokenCreatedOut, int]:
    """Create a named API token; the password is asked again, the token shown once."""
    user = _fresh_user()
    try:
        await accounts.reauthenticate(user, data.password, client=client_address())
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    token, secret = await tokens.create(user, data.name)
    out = TokenCreatedOut(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        token=secret,
    )
    return out, 201


@bp.get("/tokens")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(TokenList, 200)
@errors(401)
async def list_tokens() -> TokenList:
    """The user's API tokens (never their secrets)."""
    rows = await tokens.for_user(_user())
    return TokenList(
        tokens=[
            TokenOut(id=t.id, name=t.name, created_at=t.created_at, last_used_at=t.last_used_at)
            for t in rows
        ]
    )


@bp.delete(f"/tokens/<int(max={ID_MAX}):token_id>")
@login_required
@security_scheme([SESSION, TOKEN])
@document_response(NoContent, 204)
@errors(401, 403, 404)
async def revoke_token(token_id: int) -> tuple[str, int]:
    """Revoke one of the user's API tokens."""
    if not await tokens.revoke(_fresh_user(), token_id):
        raise NotFound(_("No such token."))
    return "", 204


@bp.get("/sessions")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(SessionList, 200)
@errors(401, 404)
async def list_sessions() -> SessionList:
    """Where the user is logged in, the most recently used first, 50 a page (`?page=`)."""
    number = request.args.get("page", 1, type=int)
    if number < 1:
        raise NotFound(_("No such page."))
    rows, more = await sessions.page(_user().id, number, PAGE_SIZE)
    current = current_session()
    return SessionList(
        sessions=[
            SessionOut(
                id=row.id,
                device=devices.label(row.device),
                ip=row.ip,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                expires_at=row.expires_at,
                remember=row.remember,
                current=current is not None and row.id == current.id,
            )
            for row in rows
        ],
        next_page=number + 1 if more else None,
    )


@bp.delete(f"/sessions/<int(max={ID_MAX}):session_id>")
@login_required
@security_scheme([SESSION, TOKEN])
@document_response(NoContent, 204)
@errors(401, 403, 404)
async def end_session(session_id: int) -> tuple[str, int]:
    """End one of the user's sessions (its pages log out at once)."""
    user = _fresh_user()
    if not await sessions.end_one(user.id, session_id, "ended_elsewhere"):
        raise NotFound(_("No such session."))
    return "", 204


@bp.post("/sessions/revoke-others")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(EndedOut, 200)
@errors(401, 403, 415)
async def end_other_sessions() -> EndedOut:
    """End every session but this one (with a token: every session)."""
    user = _fresh_user()
    current = current_session()
    keep = current.id if current is not None else None
    return EndedOut(ended=await sessions.end_all(user.id, "ended_elsewhere", keep=keep))


def _fresh_user() -> User:
    """The user, if the request may do something destructive: a token, or a fresh session."""
    if current_session() is not None and not login_fresh():
        raise NotFresh()
    return _user()


def _user() -> User:
    return cast(User, current_user._get_current_object())


def _by_token() -> bool:
    user = current_user._get_current_object()
    return isinstance(user, User) and user.api_token is not None
