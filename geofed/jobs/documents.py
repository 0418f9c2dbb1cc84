"""The documents a job is shown as: the OGC API – Processes status document (geofed's `/jobs` routes) and the
job dict pygeoapi's own views (HTML, its manager API) expect. Both are rendered from the stored `JobRecord`."""

from __future__ import annotations

from typing import Any

from geofed.jobs.store import JobRecord, iso

REL_RESULTS = "http://www.opengis.net/def/rel/ogc/1.0/results"


def status_doc(job: JobRecord, base_url: str) -> dict[str, Any]:
    """The job's statusInfo document, its links under `base_url` (the public URL)."""
    url = f"{base_url}/jobs/{job.id}"
    links = [
        {"href": url, "rel": "self", "type": "application/json", "title": "this job status"},
        {"href": f"{url}?f=html", "rel": "alternate", "type": "text/html", "title": "this job status as HTML"},
        {"href": f"{base_url}/jobs", "rel": "up", "type": "application/json", "title": "the job list"},
    ]
    if job.status == "successful":
        links.append({"href": f"{url}/results", "rel": REL_RESULTS, "type": "application/json",
                      "title": f"results of job {job.id}"})
    return {
        "type": "process",
        "jobID": job.id,
        "processID": job.process_id,
        "status": job.status,
        "message": job.message,
        "progress": job.progress,
        "created": iso(job.created),
        "started": iso(job.started),
        "finished": iso(job.finished),
        "updated": iso(job.updated),
        "links": links,
    }


def pygeoapi_job(job: JobRecord) -> dict[str, Any]:
    """A job row in the shape pygeoapi's own job views expect."""
    return {
        "type": "process",
        "identifier": job.id,
        "process_id": job.process_id,
        "status": job.status,
        "message": job.message,
        "progress": job.progress,
        "created": iso(job.created),
        "started": iso(job.started) or iso(job.created),  # pygeoapi sorts by it: never None
        "finished": iso(job.finished),
        "updated": iso(job.updated),
        "mimetype": job.mimetype or "application/json",
        "location": None,
    }
