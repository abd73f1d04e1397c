"""Flask-WTF forms: each carries the hidden csrf_token field."""

# mypy: allow-subclassing-any, allow-untyped-decorators, no-warn-unused-ignores

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm  # type: ignore[import-not-found, import-untyped]
from sqlalchemy import select  # type: ignore[import-not-found, import-untyped]
from wtforms import BooleanField, PasswordField, StringField, SubmitField  # type: ignore[import-not-found, import-untyped]
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError  # type: ignore[import-not-found, import-untyped]

from . import db
from .models import User


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Remember me")
    submit = SubmitField("Log in")


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(2, 32)])
    password = PasswordField("Password", validators=[DataRequired(), Length(8, 1024)])
    password_confirm = PasswordField(
        "Confirm password", validators=[DataRequired(), EqualTo("password")]
    )
    submit = SubmitField("Register")

    def validate_username(self, field: Any) -> None:
        if db.session.scalar(select(User).filter_by(username=field.data)) is not None:
            raise ValidationError("That username is already taken.")
