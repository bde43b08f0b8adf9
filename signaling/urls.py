from django.urls import path

from signaling import views

urlpatterns = [
    path("", views.index, name="index"),
    path("livez", views.livez, name="livez"),
    # Readiness under both names: /healthz as before, /readyz beside /livez.
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.healthz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("app/", views.app, name="app"),
]
