"""The tutorial's user blueprint: register, log in, the index that greets you, log out."""

# mypy: allow-subclassing-any, allow-untyped-decorators, no-warn-unused-ignores

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user  # type: ignore[import-not-found, import-untyped]
from sqlalchemy import select  # type: ignore[import-not-found, import-untyped]

from . import db
from .forms import LoginForm, RegisterForm
from .models import User

bp = Blueprint("user", __name__)


@bp.route("/")
def root() -> ResponseReturnValue:
    return redirect(url_for("user.index"))


@bp.route("/index/")
@login_required
def index() -> ResponseReturnValue:
    return render_template("index.html")


@bp.route("/login/", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("user.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).filter_by(username=form.username.data))
        if user is None or not user.check_password(form.password.data):
            flash("Invalid username or password.")
            return redirect(url_for("user.login"))
        login_user(user, remember=form.remember.data)
        next_page = request.args.get("next")
        if not next_page or urlsplit(next_page).netloc != "":
            next_page = url_for("user.index")
        return redirect(next_page)
    return render_template("login.html", form=form)


@bp.route("/register/", methods=["GET", "POST"])
def register() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("user.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        user = User(username=form.username.data)
        user.set_password(form.password.data)
        db.session.add(user)
        db.session.commit()
        login_user(user)
        flash(f"Welcome, {user.username}! Your account has been created.")
        return redirect(url_for("user.index"))
    return render_template("register.html", form=form)


@bp.route("/logout/")
@login_required
def logout() -> ResponseReturnValue:
    logout_user()
    flash("You have been logged out.")
    return redirect(url_for("user.login"))
