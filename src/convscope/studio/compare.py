"""The studio's compare part (studio.parts): its page and the JSON API it calls."""

from __future__ import annotations

from fastapi import APIRouter

from convscope.studio.parts import Studio


def routes(studio: Studio) -> APIRouter:
    """The compare page and its JSON API."""
    return APIRouter()
