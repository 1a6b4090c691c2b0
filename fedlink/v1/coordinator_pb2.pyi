from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldSpec(_message.Message):
    __slots__ = ("name", "hashes", "qgram", "kind", "column", "segment_bits", "group")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    QGRAM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_BITS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    hashes: int
    qgram: int
    kind: str
    column: str
    segment_bits: int
    group: str
    def __init__(self, name: _Optional[str] = ..., hashes: _Optional[int] = ..., qgram: _Optional[int] = ..., kind: _Optional[str] = ..., column: _Optional[str] = ..., segment_bits: _Optional[int] = ..., group: _Optional[str] = ...) -> None: ...

class LinkageSchema(_message.Message):
    __slots__ = ("filter_bits", "fields", "threshold", "hardening", "auto_threshold", "comparison", "id_segment_bits")
    FILTER_BITS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HARDENING_FIELD_NUMBER: _ClassVar[int]
    AUTO_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    ID_SEGMENT_BITS_FIELD_NUMBER: _ClassVar[int]
    filter_bits: int
    fields: _containers.RepeatedCompositeFieldContainer[FieldSpec]
    threshold: float
    hardening: str
    auto_threshold: bool
    comparison: str
    id_segment_bits: int
    def __init__(self, filter_bits: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[FieldSpec, _Mapping]]] = ..., threshold: _Optional[float] = ..., hardening: _Optional[str] = ..., auto_threshold: _Optional[bool] = ..., comparison: _Optional[str] = ..., id_segment_bits: _Optional[int] = ...) -> None: ...

class DepartmentSpec(_message.Message):
    __slots__ = ("name", "indicators")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INDICATORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    indicators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., indicators: _Optional[_Iterable[str]] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("project_id", "schema", "departments", "reference_date", "rules_toml", "schema_digest", "idle_rules", "suppression_floor")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DATE_FIELD_NUMBER: _ClassVar[int]
    RULES_TOML_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    IDLE_RULES_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSION_FLOOR_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    schema: LinkageSchema
    departments: _containers.RepeatedCompositeFieldContainer[DepartmentSpec]
    reference_date: str
    rules_toml: str
    schema_digest: str
    idle_rules: _containers.RepeatedCompositeFieldContainer[IdleRule]
    suppression_floor: int
    def __init__(self, project_id: _Optional[str] = ..., schema: _Optional[_Union[LinkageSchema, _Mapping]] = ..., departments: _Optional[_Iterable[_Union[DepartmentSpec, _Mapping]]] = ..., reference_date: _Optional[str] = ..., rules_toml: _Optional[str] = ..., schema_digest: _Optional[str] = ..., idle_rules: _Optional[_Iterable[_Union[IdleRule, _Mapping]]] = ..., suppression_floor: _Optional[int] = ...) -> None: ...

class IdleRule(_message.Message):
    __slots__ = ("rule", "need", "departments", "explanation")
    RULE_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENTS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    rule: str
    need: str
    departments: _containers.RepeatedScalarFieldContainer[str]
    explanation: str
    def __init__(self, rule: _Optional[str] = ..., need: _Optional[str] = ..., departments: _Optional[_Iterable[str]] = ..., explanation: _Optional[str] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ProposeChangeRequest(_message.Message):
    __slots__ = ("project_id", "reason", "rules", "linkage", "key_check_reset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    LINKAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_CHECK_RESET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    reason: str
    rules: RulesChange
    linkage: LinkageChange
    key_check_reset: KeyCheckReset
    def __init__(self, project_id: _Optional[str] = ..., reason: _Optional[str] = ..., rules: _Optional[_Union[RulesChange, _Mapping]] = ..., linkage: _Optional[_Union[LinkageChange, _Mapping]] = ..., key_check_reset: _Optional[_Union[KeyCheckReset, _Mapping]] = ...) -> None: ...

class RulesChange(_message.Message):
    __slots__ = ("rules_toml",)
    RULES_TOML_FIELD_NUMBER: _ClassVar[int]
    rules_toml: str
    def __init__(self, rules_toml: _Optional[str] = ...) -> None: ...

class LinkageChange(_message.Message):
    __slots__ = ("threshold", "auto_threshold")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AUTO_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    auto_threshold: bool
    def __init__(self, threshold: _Optional[float] = ..., auto_threshold: _Optional[bool] = ...) -> None: ...

class KeyCheckReset(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProposalItem(_message.Message):
    __slots__ = ("area", "item", "before", "after", "widens", "plain")
    AREA_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    WIDENS_FIELD_NUMBER: _ClassVar[int]
    PLAIN_FIELD_NUMBER: _ClassVar[int]
    area: str
    item: str
    before: str
    after: str
    widens: bool
    plain: str
    def __init__(self, area: _Optional[str] = ..., item: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., widens: _Optional[bool] = ..., plain: _Optional[str] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("proposal_id", "project_id", "kind", "state", "reason", "proposed_by", "proposed_at", "expires_at", "decided_by", "decided_at", "note", "items", "newly_disclosed", "rules_toml")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_BY_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEWLY_DISCLOSED_FIELD_NUMBER: _ClassVar[int]
    RULES_TOML_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    project_id: str
    kind: str
    state: str
    reason: str
    proposed_by: str
    proposed_at: float
    expires_at: float
    decided_by: str
    decided_at: float
    note: str
    items: _containers.RepeatedCompositeFieldContainer[ProposalItem]
    newly_disclosed: _containers.RepeatedScalarFieldContainer[str]
    rules_toml: str
    def __init__(self, proposal_id: _Optional[str] = ..., project_id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., proposed_by: _Optional[str] = ..., proposed_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., decided_by: _Optional[str] = ..., decided_at: _Optional[float] = ..., note: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ProposalItem, _Mapping]]] = ..., newly_disclosed: _Optional[_Iterable[str]] = ..., rules_toml: _Optional[str] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("project_id", "state")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    state: str
    def __init__(self, project_id: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ProposalList(_message.Message):
    __slots__ = ("proposals",)
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ...) -> None: ...

class GetProposalRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class DecideProposalRequest(_message.Message):
    __slots__ = ("proposal_id", "note", "on_behalf_of", "oidc")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ON_BEHALF_OF_FIELD_NUMBER: _ClassVar[int]
    OIDC_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    note: str
    on_behalf_of: str
    oidc: str
    def __init__(self, proposal_id: _Optional[str] = ..., note: _Optional[str] = ..., on_behalf_of: _Optional[str] = ..., oidc: _Optional[str] = ...) -> None: ...

class SetScheduleRequest(_message.Message):
    __slots__ = ("project_id", "every", "day", "at", "start", "start_now")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    START_NOW_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    every: str
    day: int
    at: str
    start: str
    start_now: bool
    def __init__(self, project_id: _Optional[str] = ..., every: _Optional[str] = ..., day: _Optional[int] = ..., at: _Optional[str] = ..., start: _Optional[str] = ..., start_now: _Optional[bool] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("project_id", "every", "day", "at", "next_due", "last_run_id", "last_due", "last_error")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_DUE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    every: str
    day: int
    at: str
    next_due: str
    last_run_id: str
    last_due: str
    last_error: str
    def __init__(self, project_id: _Optional[str] = ..., every: _Optional[str] = ..., day: _Optional[int] = ..., at: _Optional[str] = ..., next_due: _Optional[str] = ..., last_run_id: _Optional[str] = ..., last_due: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("project_id", "ref", "need", "outcome", "run_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    ref: bytes
    need: str
    outcome: str
    run_id: str
    def __init__(self, project_id: _Optional[str] = ..., ref: _Optional[bytes] = ..., need: _Optional[str] = ..., outcome: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("suppressed_until", "previous_outcome", "previous_run_id", "previous_recorded_at")
    SUPPRESSED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    suppressed_until: str
    previous_outcome: str
    previous_run_id: str
    previous_recorded_at: str
    def __init__(self, suppressed_until: _Optional[str] = ..., previous_outcome: _Optional[str] = ..., previous_run_id: _Optional[str] = ..., previous_recorded_at: _Optional[str] = ...) -> None: ...

class BeginUploadRequest(_message.Message):
    __slots__ = ("project_id", "schema_digest", "key_check", "upload_digest", "record_count", "batch_count", "quality")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEY_CHECK_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    schema_digest: str
    key_check: bytes
    upload_digest: bytes
    record_count: int
    batch_count: int
    quality: UploadQuality
    def __init__(self, project_id: _Optional[str] = ..., schema_digest: _Optional[str] = ..., key_check: _Optional[bytes] = ..., upload_digest: _Optional[bytes] = ..., record_count: _Optional[int] = ..., batch_count: _Optional[int] = ..., quality: _Optional[_Union[UploadQuality, _Mapping]] = ...) -> None: ...

class FieldQuality(_message.Message):
    __slots__ = ("column", "kind", "blank", "unreadable", "invalid_ids", "pinyin_only", "converted")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BLANK_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    INVALID_IDS_FIELD_NUMBER: _ClassVar[int]
    PINYIN_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    column: str
    kind: str
    blank: int
    unreadable: int
    invalid_ids: int
    pinyin_only: int
    converted: int
    def __init__(self, column: _Optional[str] = ..., kind: _Optional[str] = ..., blank: _Optional[int] = ..., unreadable: _Optional[int] = ..., invalid_ids: _Optional[int] = ..., pinyin_only: _Optional[int] = ..., converted: _Optional[int] = ...) -> None: ...

class UploadQuality(_message.Message):
    __slots__ = ("department", "upload_id", "records", "fields")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    department: str
    upload_id: str
    records: int
    fields: _containers.RepeatedCompositeFieldContainer[FieldQuality]
    def __init__(self, department: _Optional[str] = ..., upload_id: _Optional[str] = ..., records: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[FieldQuality, _Mapping]]] = ...) -> None: ...

class UploadSession(_message.Message):
    __slots__ = ("upload_id", "stored_batches", "committed")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    stored_batches: _containers.RepeatedScalarFieldContainer[int]
    committed: bool
    def __init__(self, upload_id: _Optional[str] = ..., stored_batches: _Optional[_Iterable[int]] = ..., committed: _Optional[bool] = ...) -> None: ...

class EncodedRecord(_message.Message):
    __slots__ = ("ref", "clk", "indicators", "household")
    class IndicatorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    CLK_FIELD_NUMBER: _ClassVar[int]
    INDICATORS_FIELD_NUMBER: _ClassVar[int]
    HOUSEHOLD_FIELD_NUMBER: _ClassVar[int]
    ref: bytes
    clk: bytes
    indicators: _containers.ScalarMap[str, int]
    household: bytes
    def __init__(self, ref: _Optional[bytes] = ..., clk: _Optional[bytes] = ..., indicators: _Optional[_Mapping[str, int]] = ..., household: _Optional[bytes] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ("upload_id", "seq", "digest", "records")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    seq: int
    digest: bytes
    records: _containers.RepeatedCompositeFieldContainer[EncodedRecord]
    def __init__(self, upload_id: _Optional[str] = ..., seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., records: _Optional[_Iterable[_Union[EncodedRecord, _Mapping]]] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("seq", "stored", "duplicate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    stored: int
    duplicate: bool
    def __init__(self, seq: _Optional[int] = ..., stored: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class CommitUploadRequest(_message.Message):
    __slots__ = ("upload_id", "dry_run")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    dry_run: bool
    def __init__(self, upload_id: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class UploadSummary(_message.Message):
    __slots__ = ("upload_id", "department", "record_count", "committed", "replaced_upload_id", "records_kept", "records_added", "records_removed", "health_warnings")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_KEPT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_ADDED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    HEALTH_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    department: str
    record_count: int
    committed: bool
    replaced_upload_id: str
    records_kept: int
    records_added: int
    records_removed: int
    health_warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, upload_id: _Optional[str] = ..., department: _Optional[str] = ..., record_count: _Optional[int] = ..., committed: _Optional[bool] = ..., replaced_upload_id: _Optional[str] = ..., records_kept: _Optional[int] = ..., records_added: _Optional[int] = ..., records_removed: _Optional[int] = ..., health_warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("project_id", "as_of")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    as_of: str
    def __init__(self, project_id: _Optional[str] = ..., as_of: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "project_id", "state")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    project_id: str
    state: str
    def __init__(self, run_id: _Optional[str] = ..., project_id: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("run_id", "phase", "done", "total", "state", "message")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    phase: str
    done: int
    total: int
    state: str
    message: str
    def __init__(self, run_id: _Optional[str] = ..., phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., state: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CountCell(_message.Message):
    __slots__ = ("key", "count", "suppressed")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    key: str
    count: int
    suppressed: bool
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ..., suppressed: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("run_id", "state", "records_per_department", "linked_pairs_per_department_pair", "persons_by_department_count", "flags_per_need", "suppression_k", "persons", "flags_per_status", "outcomes_per_rule", "encoding_health", "idle_rules", "upload_quality", "probe_signals", "pair_scores", "retention", "flags_per_need_tier")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PER_DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    LINKED_PAIRS_PER_DEPARTMENT_PAIR_FIELD_NUMBER: _ClassVar[int]
    PERSONS_BY_DEPARTMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_PER_NEED_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSION_K_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_PER_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_PER_RULE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_HEALTH_FIELD_NUMBER: _ClassVar[int]
    IDLE_RULES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_QUALITY_FIELD_NUMBER: _ClassVar[int]
    PROBE_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    PAIR_SCORES_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_PER_NEED_TIER_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: str
    records_per_department: _containers.RepeatedCompositeFieldContainer[CountCell]
    linked_pairs_per_department_pair: _containers.RepeatedCompositeFieldContainer[CountCell]
    persons_by_department_count: _containers.RepeatedCompositeFieldContainer[CountCell]
    flags_per_need: _containers.RepeatedCompositeFieldContainer[CountCell]
    suppression_k: int
    persons: int
    flags_per_status: _containers.RepeatedCompositeFieldContainer[CountCell]
    outcomes_per_rule: _containers.RepeatedCompositeFieldContainer[CountCell]
    encoding_health: _containers.RepeatedCompositeFieldContainer[EncodingHealth]
    idle_rules: _containers.RepeatedCompositeFieldContainer[IdleRule]
    upload_quality: _containers.RepeatedCompositeFieldContainer[UploadQuality]
    probe_signals: _containers.RepeatedCompositeFieldContainer[ProbeSignals]
    pair_scores: _containers.RepeatedCompositeFieldContainer[PairScores]
    retention: Retention
    flags_per_need_tier: _containers.RepeatedCompositeFieldContainer[CountCell]
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[str] = ..., records_per_department: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., linked_pairs_per_department_pair: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., persons_by_department_count: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., flags_per_need: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., suppression_k: _Optional[int] = ..., persons: _Optional[int] = ..., flags_per_status: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., outcomes_per_rule: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., encoding_health: _Optional[_Iterable[_Union[EncodingHealth, _Mapping]]] = ..., idle_rules: _Optional[_Iterable[_Union[IdleRule, _Mapping]]] = ..., upload_quality: _Optional[_Iterable[_Union[UploadQuality, _Mapping]]] = ..., probe_signals: _Optional[_Iterable[_Union[ProbeSignals, _Mapping]]] = ..., pair_scores: _Optional[_Iterable[_Union[PairScores, _Mapping]]] = ..., retention: _Optional[_Union[Retention, _Mapping]] = ..., flags_per_need_tier: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ...) -> None: ...

class ProbeSignals(_message.Message):
    __slots__ = ("department", "records_first_seen", "records_short_lived", "flags_on_first_seen_records", "flags_held")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_SHORT_LIVED_FIELD_NUMBER: _ClassVar[int]
    FLAGS_ON_FIRST_SEEN_RECORDS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_HELD_FIELD_NUMBER: _ClassVar[int]
    department: str
    records_first_seen: int
    records_short_lived: int
    flags_on_first_seen_records: int
    flags_held: int
    def __init__(self, department: _Optional[str] = ..., records_first_seen: _Optional[int] = ..., records_short_lived: _Optional[int] = ..., flags_on_first_seen_records: _Optional[int] = ..., flags_held: _Optional[int] = ...) -> None: ...

class PairScores(_message.Message):
    __slots__ = ("pair", "threshold", "floor", "bin_width", "bins", "below_floor")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    BIN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    BELOW_FLOOR_FIELD_NUMBER: _ClassVar[int]
    pair: str
    threshold: float
    floor: float
    bin_width: float
    bins: _containers.RepeatedCompositeFieldContainer[CountCell]
    below_floor: CountCell
    def __init__(self, pair: _Optional[str] = ..., threshold: _Optional[float] = ..., floor: _Optional[float] = ..., bin_width: _Optional[float] = ..., bins: _Optional[_Iterable[_Union[CountCell, _Mapping]]] = ..., below_floor: _Optional[_Union[CountCell, _Mapping]] = ...) -> None: ...

class Retention(_message.Message):
    __slots__ = ("keep_runs", "uploads_held", "records_held", "oldest_held", "uploads_purged", "records_purged", "runs_purged")
    KEEP_RUNS_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_HELD_FIELD_NUMBER: _ClassVar[int]
    RECORDS_HELD_FIELD_NUMBER: _ClassVar[int]
    OLDEST_HELD_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_PURGED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PURGED_FIELD_NUMBER: _ClassVar[int]
    RUNS_PURGED_FIELD_NUMBER: _ClassVar[int]
    keep_runs: int
    uploads_held: int
    records_held: int
    oldest_held: str
    uploads_purged: int
    records_purged: int
    runs_purged: int
    def __init__(self, keep_runs: _Optional[int] = ..., uploads_held: _Optional[int] = ..., records_held: _Optional[int] = ..., oldest_held: _Optional[str] = ..., uploads_purged: _Optional[int] = ..., records_purged: _Optional[int] = ..., runs_purged: _Optional[int] = ...) -> None: ...

class EncodingHealth(_message.Message):
    __slots__ = ("department", "upload_id", "fill_rate", "fill_min", "fill_max", "empty_filters", "max_duplicates", "duplicate_limit", "position_min", "position_max", "chi2_per_dof", "constant_positions", "dead_positions", "warnings")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    FILL_RATE_FIELD_NUMBER: _ClassVar[int]
    FILL_MIN_FIELD_NUMBER: _ClassVar[int]
    FILL_MAX_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POSITION_MIN_FIELD_NUMBER: _ClassVar[int]
    POSITION_MAX_FIELD_NUMBER: _ClassVar[int]
    CHI2_PER_DOF_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    DEAD_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    department: str
    upload_id: str
    fill_rate: float
    fill_min: float
    fill_max: float
    empty_filters: int
    max_duplicates: int
    duplicate_limit: int
    position_min: float
    position_max: float
    chi2_per_dof: float
    constant_positions: int
    dead_positions: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, department: _Optional[str] = ..., upload_id: _Optional[str] = ..., fill_rate: _Optional[float] = ..., fill_min: _Optional[float] = ..., fill_max: _Optional[float] = ..., empty_filters: _Optional[int] = ..., max_duplicates: _Optional[int] = ..., duplicate_limit: _Optional[int] = ..., position_min: _Optional[float] = ..., position_max: _Optional[float] = ..., chi2_per_dof: _Optional[float] = ..., constant_positions: _Optional[int] = ..., dead_positions: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class PullFlagsRequest(_message.Message):
    __slots__ = ("project_id", "run_id", "department")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    run_id: str
    department: str
    def __init__(self, project_id: _Optional[str] = ..., run_id: _Optional[str] = ..., department: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("rule", "indicators")
    RULE_FIELD_NUMBER: _ClassVar[int]
    INDICATORS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    indicators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rule: _Optional[str] = ..., indicators: _Optional[_Iterable[str]] = ...) -> None: ...

class Flag(_message.Message):
    __slots__ = ("ref", "need", "tier", "reasons", "departments_linked", "match_scores", "run_id", "explanation", "status", "since", "transition_until", "match_departments", "explanation_zh", "rests_on_first_seen", "upload_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    NEED_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENTS_LINKED_FIELD_NUMBER: _ClassVar[int]
    MATCH_SCORES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_UNTIL_FIELD_NUMBER: _ClassVar[int]
    MATCH_DEPARTMENTS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_ZH_FIELD_NUMBER: _ClassVar[int]
    RESTS_ON_FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ref: bytes
    need: str
    tier: int
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    departments_linked: int
    match_scores: _containers.RepeatedScalarFieldContainer[float]
    run_id: str
    explanation: str
    status: str
    since: str
    transition_until: str
    match_departments: _containers.RepeatedScalarFieldContainer[str]
    explanation_zh: str
    rests_on_first_seen: bool
    upload_id: str
    def __init__(self, ref: _Optional[bytes] = ..., need: _Optional[str] = ..., tier: _Optional[int] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., departments_linked: _Optional[int] = ..., match_scores: _Optional[_Iterable[float]] = ..., run_id: _Optional[str] = ..., explanation: _Optional[str] = ..., status: _Optional[str] = ..., since: _Optional[str] = ..., transition_until: _Optional[str] = ..., match_departments: _Optional[_Iterable[str]] = ..., explanation_zh: _Optional[str] = ..., rests_on_first_seen: _Optional[bool] = ..., upload_id: _Optional[str] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckpointReply(_message.Message):
    __slots__ = ("checkpoint", "witnessed", "log_key")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    WITNESSED_FIELD_NUMBER: _ClassVar[int]
    LOG_KEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    witnessed: _containers.RepeatedScalarFieldContainer[str]
    log_key: str
    def __init__(self, checkpoint: _Optional[str] = ..., witnessed: _Optional[_Iterable[str]] = ..., log_key: _Optional[str] = ...) -> None: ...

class AddCosignatureRequest(_message.Message):
    __slots__ = ("cosigned",)
    COSIGNED_FIELD_NUMBER: _ClassVar[int]
    cosigned: str
    def __init__(self, cosigned: _Optional[str] = ...) -> None: ...

class AddCosignatureReply(_message.Message):
    __slots__ = ("witnesses",)
    WITNESSES_FIELD_NUMBER: _ClassVar[int]
    witnesses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, witnesses: _Optional[_Iterable[str]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class Proof(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("start", "end", "actor", "kind", "department", "since", "until", "run_id", "kinds")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    actor: str
    kind: str
    department: str
    since: float
    until: float
    run_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., actor: _Optional[str] = ..., kind: _Optional[str] = ..., department: _Optional[str] = ..., since: _Optional[float] = ..., until: _Optional[float] = ..., run_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "body")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    body: str
    def __init__(self, seq: _Optional[int] = ..., body: _Optional[str] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProjectSummary(_message.Message):
    __slots__ = ("project_id", "departments", "reference_date", "threshold", "auto_threshold", "created_by", "created_at", "runs")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DATE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AUTO_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    departments: _containers.RepeatedCompositeFieldContainer[DepartmentSpec]
    reference_date: str
    threshold: float
    auto_threshold: bool
    created_by: str
    created_at: str
    runs: int
    def __init__(self, project_id: _Optional[str] = ..., departments: _Optional[_Iterable[_Union[DepartmentSpec, _Mapping]]] = ..., reference_date: _Optional[str] = ..., threshold: _Optional[float] = ..., auto_threshold: _Optional[bool] = ..., created_by: _Optional[str] = ..., created_at: _Optional[str] = ..., runs: _Optional[int] = ...) -> None: ...

class ProjectList(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[ProjectSummary]
    def __init__(self, projects: _Optional[_Iterable[_Union[ProjectSummary, _Mapping]]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("project_id", "limit")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    limit: int
    def __init__(self, project_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("run_id", "project_id", "state", "as_of", "started_by", "created_at", "finished_at", "persons")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    project_id: str
    state: str
    as_of: str
    started_by: str
    created_at: str
    finished_at: str
    persons: int
    def __init__(self, run_id: _Optional[str] = ..., project_id: _Optional[str] = ..., state: _Optional[str] = ..., as_of: _Optional[str] = ..., started_by: _Optional[str] = ..., created_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., persons: _Optional[int] = ...) -> None: ...

class RunList(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ...) -> None: ...

class RecordViewRequest(_message.Message):
    __slots__ = ("viewer", "page", "oidc")
    VIEWER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    OIDC_FIELD_NUMBER: _ClassVar[int]
    viewer: str
    page: str
    oidc: str
    def __init__(self, viewer: _Optional[str] = ..., page: _Optional[str] = ..., oidc: _Optional[str] = ...) -> None: ...

class RecordViewResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...
