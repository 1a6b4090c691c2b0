"""The console's words in English and Chinese. The language is the one the
person chose (the switch sets a cookie), else the first of the browser's
Accept-Language that the console speaks, else English."""
from __future__ import annotations

LANGUAGES = ("en", "zh")

WORDS: dict[str, tuple[str, str]] = {
    # key: (English, Chinese)
    "title": ("fedlink console", "fedlink 控制台"),
    "signed_in_as": ("Signed in as", "当前登录"),
    "language": ("Language", "语言"),
    "projects": ("Projects", "项目"),
    "project": ("Project", "项目"),
    "departments": ("Departments", "部门"),
    "indicators": ("Indicators", "指标"),
    "reference_date": ("Reference date", "参考日期"),
    "threshold": ("Threshold", "阈值"),
    "auto": ("automatic per pair", "按部门对自动"),
    "created": ("Created", "创建时间"),
    "created_by": ("Created by", "创建人"),
    "runs": ("Runs", "运行"),
    "run": ("Run", "运行"),
    "state": ("State", "状态"),
    "as_of": ("As of", "数据日期"),
    "started_by": ("Started by", "发起人"),
    "started": ("Started", "开始时间"),
    "finished": ("Finished", "结束时间"),
    "persons": ("Persons", "人数"),
    "schedule": ("Schedule", "计划"),
    "no_schedule": ("No schedule: runs start by hand.", "无计划：运行需手动发起。"),
    "every": ("Every", "周期"),
    "next_due": ("Next run due", "下次运行"),
    "last_run": ("Last scheduled run", "上次计划运行"),
    "last_error": ("Why the last due run did not start", "上次未能运行的原因"),
    "progress": ("Live progress", "实时进度"),
    "phase": ("Phase", "阶段"),
    "report": ("Report", "报告"),
    "score_histograms": ("Match scores per department pair", "各部门对的匹配得分"),
    "histogram_note": ("Best score of sampled records of each side against the other; the line is the threshold "
                       "the pair was linked at. Hatched bins hold fewer than k records and are withheld.",
                       "每方抽样记录与另一方的最高得分；竖线为该部门对的链接阈值。阴影格少于 k 条记录，不予显示。"),
    "below_floor": ("below the chart", "低于图表下限"),
    "links": ("Links per department pair", "各部门对的链接数"),
    "records_per_department": ("Records per department", "各部门记录数"),
    "persons_by_department_count": ("Persons by number of departments", "按所涉部门数统计的人数"),
    "encoding_health": ("Encoding health", "编码健康度"),
    "fill_rate": ("Fill rate", "置位率"),
    "empty_filters": ("Empty filters", "空过滤器"),
    "max_duplicates": ("Largest identical group", "最大重复组"),
    "chi2": ("Position uniformity (χ²/dof)", "位分布均匀度 (χ²/自由度)"),
    "warnings": ("Warnings", "警告"),
    "none": ("none", "无"),
    "flags": ("Flags", "标记"),
    "flags_over_runs": ("Flags per need over runs", "各需求标记数（按运行）"),
    "flags_per_status": ("Flags per status", "各状态标记数"),
    "need": ("Need", "需求"),
    "outcomes": ("Review outcomes per rule", "各规则的复核结果"),
    "rule": ("Rule", "规则"),
    "wrong_person_share": ("Wrong-person share", "认错人比例"),
    "wrong_person_alert": ("high: check this rule's links", "偏高：请检查该规则的链接"),
    "quality": ("Data quality per upload", "各上传的数据质量"),
    "department": ("Department", "部门"),
    "records": ("Records", "记录数"),
    "column": ("Column", "列"),
    "blank": ("Blank", "空白"),
    "unreadable": ("Unreadable", "无法读取"),
    "invalid_ids": ("Invalid IDs", "无效证件号"),
    "pinyin_only": ("Pinyin only", "仅拼音"),
    "converted": ("Converted", "已转换"),
    "withheld": ("<k", "<k"),
    "suppressed_note": ("Cells of fewer than {k} people are withheld.", "少于 {k} 人的单元格不予显示。"),
    "idle_rules": ("Rules that could not fire", "无法触发的规则"),
    "audit_log": ("Audit log", "审计日志"),
    "actor": ("Actor", "操作者"),
    "kind": ("Kind", "类型"),
    "since": ("From", "起始"),
    "until": ("To", "截止"),
    "filter": ("Filter", "筛选"),
    "time": ("Time", "时间"),
    "details": ("Details", "详情"),
    "seq": ("No.", "序号"),
    "check": ("Check inclusion", "核验收录"),
    "events_shown": ("{n} events, newest first", "共 {n} 条事件，最新在前"),
    "checkpoint": ("Checkpoint", "检查点"),
    "origin": ("Log", "日志"),
    "note": ("The checkpoint as signed (C2SP signed note)", "签名原文（C2SP 签名笔记）"),
    "tree_size": ("Events covered", "覆盖事件数"),
    "root_hash": ("Root hash", "根哈希"),
    "key_id": ("Signing key", "签名密钥"),
    "signature": ("Signature", "签名"),
    "verified": ("verified under the pinned log key", "已用固定日志公钥验证"),
    "not_verified": ("DOES NOT VERIFY", "验证失败"),
    "cosignatures": ("Witness cosignatures (verified)", "见证人联署（已验证）"),
    "no_cosignatures": ("No listed witness has cosigned a checkpoint of this log yet.",
                        "名单上的见证人尚未联署本日志的任何检查点。"),
    "inclusion": ("Inclusion check", "收录核验"),
    "inclusion_ok": ("Event {seq} is in the log of {size} events the checkpoint covers; the proof verified here.",
                     "事件 {seq} 已收录于检查点覆盖的 {size} 条事件中；证明已在本地验证。"),
    "inclusion_bad": ("Event {seq} is NOT proven in the signed log: {problem}", "事件 {seq} 未能在签名日志中得到证明：{problem}"),
    "event_no": ("Event number", "事件序号"),
    "access": ("Access report", "访问报告"),
    "access_note": ("Who read what, per actor; filter by department or run.", "按操作者统计谁读取了什么；可按部门或运行筛选。"),
    "disclosure": ("Disclosure per department and run", "按部门和运行统计的披露"),
    "disclosure_note": ("Other departments' evidence each department was shown (by kind, records), and what probing "
                        "through its own extract would leave.", "各部门看到的其他部门证据（按类别、记录数），以及通过自身数据试探会留下的痕迹。"),
    "pulls": ("Pulls", "拉取次数"),
    "disclosed": ("Evidence shown", "披露的证据"),
    "probe_signals": ("Probe signals", "试探迹象"),
    "reads": ("Reads", "读取"),
    "last_read": ("Last read", "最后读取"),
    "any": ("any", "全部"),
    "not_found": ("Not found", "未找到"),
    "refused": ("Refused", "拒绝"),
    "coordinator_said": ("The coordinator answered", "协调方答复"),
    "operator_pages": ("Operator", "操作员"),
    "officer_pages": ("Privacy officer", "隐私官"),
    "needs_role": ("This page is for the {role} role; your certificate says {has}.",
                   "此页面需要{role}角色；您的证书为{has}。"),
    "approvals": ("Rule changes waiting for approval", "待审批的规则变更"),
    "approvals_note": ("Dual-control approvals are not on this coordinator yet.", "此协调方尚未提供双人审批。"),
    "skip": ("Skip to content", "跳到正文"),
}


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag[:2] in LANGUAGES:
            return tag[:2]
    return "en"


def translator(language: str):
    index = LANGUAGES.index(language)

    def t(key: str, **values) -> str:
        text = WORDS[key][index]
        return text.format(**values) if values else text
    return t
