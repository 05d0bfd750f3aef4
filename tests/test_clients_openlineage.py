"""The real OpenLineage Python client (``HttpTransport``) against a live server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, parent_run
from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport

from tests.conftest import LiveServer
from waymark.model import iso, to_us

PRODUCER = "https://github.com/example/waymark-tests"
NAMESPACE = "airflow-prod"
DAG = "parking_fees_daily"
RAW = InputDataset(namespace="s3://ok-origo-raw", name="green/parking-fees/fees.csv")
PARQUET = OutputDataset(namespace="s3://ok-origo-processed", name="green/parking-fees/fees.parquet")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)  # recent: not STALLED


def client(server: LiveServer, *, gzip: bool = False) -> OpenLineageClient:
    config = HttpConfig(
        url=server.url, compression=HttpCompression.GZIP if gzip else None, timeout=10
    )
    return OpenLineageClient(transport=HttpTransport(config))


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def run_event(
    state: RunState,
    seconds: int,
    run_id: str,
    job: str,
    *,
    parent_id: str | None = None,
    inputs: list[InputDataset] | None = None,
    outputs: list[OutputDataset] | None = None,
    error: str | None = None,
) -> RunEvent:
    facets: dict[str, object] = {}
    if parent_id is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_id),
            job=parent_run.Job(namespace=NAMESPACE, name=DAG),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=parent_id),
                job=parent_run.RootJob(namespace=NAMESPACE, name=DAG),
            ),
        )
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", stackTrace=f"Traceback...\n{error}"
        )
    return RunEvent(
        eventType=state,
        eventTime=at(seconds),
        run=Run(runId=run_id, facets=facets),  # type: ignore[arg-type]
        job=Job(namespace=NAMESPACE, name=job),
        producer=PRODUCER,
        inputs=inputs or [],
        outputs=outputs or [],
    )


def new_id() -> str:
    return str(uuid.uuid4())


def test_a_dag_run_with_two_tasks_succeeds_with_its_lineage(live_server: LiveServer) -> None:
    ol = client(live_server)
    dag, read, write = new_id(), new_id(), new_id()
    ol.emit(run_event(RunState.START, 0, dag, DAG))
    ol.emit(run_event(RunState.START, 1, read, f"{DAG}.extract", parent_id=dag, inputs=[RAW]))
    ol.emit(run_event(RunState.COMPLETE, 5, read, f"{DAG}.extract", parent_id=dag, inputs=[RAW]))
    ol.emit(run_event(RunState.START, 6, write, f"{DAG}.load", parent_id=dag))
    ol.emit(run_event(RunState.COMPLETE, 8, write, f"{DAG}.load", parent_id=dag, outputs=[PARQUET]))

    summary = httpx.get(f"{live_server.url}/v1/traces/{dag}").json()
    assert (summary["done"], summary["state"]) == (False, "RUNNING")

    ol.emit(run_event(RunState.COMPLETE, 9, dag, DAG))
    ol.emit(run_event(RunState.COMPLETE, 9, dag, DAG))  # a retry: a duplicate, not an event

    summary = httpx.get(f"{live_server.url}/v1/traces/{dag}").json()
    assert summary["done"] is True
    assert summary["state"] == "SUCCEEDED"
    assert summary["event_count"] == 6
    assert summary["current"]["component"] == NAMESPACE
    assert summary["current"]["operation"] == DAG
    assert summary["started_at"] == iso(to_us(T0))
    assert summary["finished_at"] == iso(to_us(T0 + timedelta(seconds=9)))

    lineage = httpx.get(f"{live_server.url}/v1/traces/{dag}/lineage").json()
    raw = "s3://ok-origo-raw/green/parking-fees/fees.csv"
    parquet = "s3://ok-origo-processed/green/parking-fees/fees.parquet"
    paths = {n["path"] for n in lineage["nodes"] if n["kind"] == "path"}
    assert paths == {raw, parquet}
    edges = [(e["from"], e["to"]) for e in lineage["edges"]]
    readers = [to for source, to in edges if source == f"path:{raw}"]
    writers = [source for source, to in edges if to == f"path:{parquet}"]
    assert len(readers) == 2 and len(writers) == 1 and len(edges) == 3  # steps between

    events = httpx.get(f"{live_server.url}/v1/traces/{dag}/events").json()["items"]
    assert [e["inputs"] for e in events if "inputs" in e] == [[raw], [raw]]
    assert [e["outputs"] for e in events if "outputs" in e] == [[parquet]]
    assert [(e["operation"], e["status"], e["trace_status"]) for e in events] == [
        (DAG, "IN_PROGRESS", "STARTED"),
        (f"{DAG}.extract", "IN_PROGRESS", "CONTINUE"),
        (f"{DAG}.extract", "SUCCESS", "CONTINUE"),
        (f"{DAG}.load", "IN_PROGRESS", "CONTINUE"),
        (f"{DAG}.load", "SUCCESS", "CONTINUE"),
        (DAG, "SUCCESS", "FINISHED"),
    ]


def test_a_failed_run_is_failed_with_its_error_message(live_server: LiveServer) -> None:
    ol = client(live_server, gzip=True)
    run = new_id()
    ol.emit(run_event(RunState.START, 0, run, "nightly_export"))
    ol.emit(run_event(RunState.FAIL, 3, run, "nightly_export", error="Table not found: fees"))

    summary = httpx.get(f"{live_server.url}/v1/traces/{run}").json()
    assert (summary["done"], summary["state"], summary["trace_event_status"]) == (
        True,
        "FAILED",
        "FAILED",
    )
    assert summary["errors"] == [{"message": {"en": "Table not found: fees"}}]
    last = httpx.get(f"{live_server.url}/v1/traces/{run}/events").json()["items"][-1]
    assert last["exception"] == "Traceback...\nTable not found: fees"
