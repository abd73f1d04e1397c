"""The user table, and the loader Flask-Login calls with the id kept in the session cookie."""

# mypy: allow-subclassing-any, allow-untyped-decorators, no-warn-unused-ignores

from __future__ import annotations

from flask_login import UserMixin  # type: ignore[import-not-found, import-untyped]
from sqlalchemy import String  # type: ignore[import-not-found, import-untyped]
from sqlalchemy.orm import Mapped, mapped_column  # type: ignore[import-not-found, import-untyped]
from werkzeug.security import check_password_hash, generate_password_hash

from . import db, login_manager


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))  # type: ignore[no-any-return]
