"""What every part of the studio shares: the runs folder, the page templates, the uploads, the workers, the trainings.

Each part (studio.live, compare, network, mistakes, train_page) is one module with `routes(studio) -> APIRouter`:
its HTML page(s) and the JSON API they call; studio.app includes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from convscope.studio.jobs import Jobs
from convscope.studio.uploads import UploadStore
from convscope.studio.work import Work


@dataclass(frozen=True)
class Studio:
    runs: Path  # the runs folder served (resolved)
    templates: Jinja2Templates
    uploads: UploadStore
    work: Work
    jobs: Jobs

    def page(self, request: Request, template: str, nav: str, **context) -> HTMLResponse:
        """The page `template` (templates/), its nav entry `nav` marked, with `context` for Jinja2."""
        return self.templates.TemplateResponse(request, template, {"nav": nav, "runs_dir": str(self.runs), **context})
