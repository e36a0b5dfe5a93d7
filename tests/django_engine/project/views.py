"""Views that use the session the way Django apps do: auth, messages, CSRF, plain keys."""

from __future__ import annotations

import time

from django.contrib import auth, messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def show(request: HttpRequest) -> JsonResponse:
    """The session's data, the logged-in user and the session key's presence."""
    user = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse({"data": dict(request.session.items()), "user": user})


@csrf_exempt
def set_key(request: HttpRequest, key: str) -> JsonResponse:
    """Set one key (from the `value` form field, or the query); `delay` seconds first.

    `pause` seconds more between loading the session and setting the key: a request in
    flight that a concurrent one (a login, a logout) overtakes.
    """
    time.sleep(float(request.GET.get("delay", 0)))
    pause = float(request.GET.get("pause", 0))
    if pause:
        request.session.get(key)  # loads it
        time.sleep(pause)
    request.session[key] = request.POST.get("value", request.GET.get("value", "1"))
    return JsonResponse({"ok": True})


@csrf_exempt
def login(request: HttpRequest) -> JsonResponse:
    user = auth.authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    auth.login(request, user)
    return JsonResponse({"ok": True})


@csrf_exempt
def logout(request: HttpRequest) -> JsonResponse:
    auth.logout(request)
    return JsonResponse({"ok": True})


@csrf_exempt
def add_message(request: HttpRequest) -> JsonResponse:
    messages.info(request, request.POST.get("text", "hello"))
    return JsonResponse({"ok": True})


def read_messages(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"messages": [str(m) for m in messages.get_messages(request)]})


def csrf_token(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"token": get_token(request)})


def protected(request: HttpRequest) -> JsonResponse:
    """A POST that CsrfViewMiddleware checks (with CSRF_USE_SESSIONS, against the session)."""
    return JsonResponse({"ok": True})
