"""A misbehaving agent, speaking the wire protocol itself: uploads it begins
and never finishes, streams it opens and leaves idle, floods of small batches."""
from __future__ import annotations

import os
import threading

import grpc

from fedlink.client import CoordinatorClient
from fedlink.pki import credentials_for
from fedlink.schema import Project
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import batch_digest, upload_digest

KEY_CHECK = b"k" * 32


class Abuser(CoordinatorClient):
    def __init__(self, address: str, pki, department: str = "population"):
        super().__init__(address, credentials_for(pki, f"agent-{department}"))

    def begin(self, project: Project, records: int = 1, batches: int = 1, digest: bytes | None = None):
        return self._call(self.stub.BeginUpload, pb.BeginUploadRequest(
            project_id=project.project_id, schema_digest=project.digest(), key_check=KEY_CHECK,
            upload_digest=digest or os.urandom(32), record_count=records, batch_count=batches), timeout=10)

    @staticmethod
    def one_record_batches(project: Project, n: int) -> list[pb.RecordBatch]:
        width = project.schema.filter_bytes
        out = []
        for seq in range(n):
            ref, clk = os.urandom(32), os.urandom(width)
            out.append(pb.RecordBatch(seq=seq, digest=batch_digest([(ref, clk, {}, b"")]),
                                      records=[pb.EncodedRecord(ref=ref, clk=clk)]))
        return out

    def upload_batches(self, project: Project, batches: list[pb.RecordBatch], acks: list | None = None):
        """Begin an upload of these batches and stream them all in one call; the acks (also appended
        to `acks` as they come)."""
        session = self.begin(project, len(batches), len(batches),
                             upload_digest(project.digest(), [b.digest for b in batches]))
        for b in batches:
            b.upload_id = session.upload_id
        acks = [] if acks is None else acks
        for ack in self.stub.UploadBatches(iter(batches), timeout=600):
            acks.append(ack)
        return session.upload_id, acks

    def idle_stream(self, release: threading.Event) -> dict:
        """An UploadBatches call that sends nothing until `release`; its outcome fills the dict."""
        outcome: dict = {}

        def nothing():
            release.wait(600)
            return
            yield  # a generator that yields nothing

        def run():
            try:
                outcome["acks"] = list(self.stub.UploadBatches(nothing(), timeout=600))
            except grpc.RpcError as e:
                outcome["error"] = e
            outcome["done"] = True

        threading.Thread(target=run, daemon=True).start()
        return outcome
