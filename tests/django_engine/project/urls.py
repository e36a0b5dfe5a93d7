from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health),
    path("show", views.show),
    path("set/<str:key>", views.set_key),
    path("login", views.login),
    path("logout", views.logout),
    path("message", views.add_message),
    path("messages", views.read_messages),
    path("csrf", views.csrf_token),
    path("protected", views.protected),
]
