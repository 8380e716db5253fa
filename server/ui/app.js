// wuding auditor application: one page, plain JavaScript, no build step.
// Every piece of data is inserted through esc() or textContent.
"use strict";

const T = {
  zh: {
    dashboard: "总览", findings: "疑点", rules: "规则", terminals: "终端", audit: "审计日志", users: "用户",
    login: "登录", logout: "退出", username: "用户名", password: "密码",
    attested: "终端证实的治疗次数", claimed: "申报的治疗次数", match_rate: "匹配率", phantom: "虚构治疗（无证实）",
    phantom_fen: "虚构治疗金额（元）", fallback_rate: "人工核验比例", per_patient: "人均每月申报次数",
    findings_fen: "疑点涉及金额（元）", red: "红", yellow: "黄", green: "绿", trend: "按月趋势",
    region: "地区 / 医院", peers: "同级比较：人均每月申报次数（虚线为中位数）", drill: "下钻",
    severity: "等级", rule: "规则", status: "状态", hospital: "医院或地区代码", from: "起始日期", to: "截止日期",
    sort: "排序", search: "查询", total: "共", items: "条", amount: "金额（元）", patient: "参保人",
    date: "日期", explanation: "说明", prev: "上一页", next: "下一页", page: "第", export_csv: "导出 CSV",
    export_xlsx: "导出 Excel", any: "全部", sort_sev: "按等级", sort_amount: "按金额", sort_date: "按日期",
    case: "案件", records: "终端签名记录", claim_lines: "申报明细", plan: "五定方案", calendar: "本月日历",
    history: "处理记录", signature: "签名", chain: "链位置", log: "透明日志", verified: "已验证", failed: "验证失败",
    check_in: "签到", check_out: "签退", identity: "身份核验", score: "指纹比对分", fallback: "人工核验",
    reason: "理由", deduct_amount: "扣款金额（元）", attachment: "附件", do: "执行", reveal: "显示完整身份号",
    reveal_reason: "查看理由（将记入审计日志）", evidence: "下载证据包", deadline: "申诉截止",
    no_actions: "当前状态下您没有可执行的操作。", not_found: "未找到记录", terminal: "终端",
    key_status: "密钥状态", version: "版本", whatif: "阈值试算", param: "参数", values: "候选值（逗号分隔）",
    run: "试算", save_rules: "保存新版本规则", rules_toml: "规则配置（TOML）", versions: "历史版本",
    author: "修改人", at: "时间", last_contact: "最后联系", chain_head: "链头", skew: "最大时钟偏差",
    alarms: "告警", approve: "批准", revoke: "吊销", held: "待补链记录", actor: "操作人", action: "操作",
    subject: "对象", add_user: "新增用户", display_name: "姓名", role: "角色", saved: "已保存",
    actions: { confirm: "初审确认（通知医院）", dismiss: "初审排除", appeal: "申诉", accept: "医院认可",
      uphold: "复审维持", withdraw: "撤销", escalate: "提交专家合议", panel_uphold: "合议维持",
      panel_withdraw: "合议撤销", deduct: "扣款" },
    statuses: { open: "机审待初审", dismissed: "初审排除", notified: "已通知医院", appealed: "申诉中",
      panel: "专家合议中", upheld: "维持", withdrawn: "已撤销", deducted: "已扣款" },
    roles: { auditor: "稽核员", senior_auditor: "高级稽核（专家组）", hospital: "医院用户", admin: "管理员" },
    patients: "参保人", patient_page: "参保人档案", record: "终端签名记录", months: "各月情况", month: "月份",
    plan_check: "五定方案与实际对照", planned: "方案规定", actual: "实际", ok: "一致", source: "来源",
    held_here: "待补链", findings_of_patient: "该参保人的疑点", sort_attested: "按证实次数",
    sort_claimed: "按申报次数", sort_phantom: "按虚构次数", no_plan: "当日无有效五定方案",
    items_: { hospital: "定医院", department: "定科室", doctor: "定医生", treatment: "治疗方式", drug: "定药品", dose: "定剂量" },
    open_patient: "查看参保人", all_findings: "全部疑点",
  },
  en: {
    dashboard: "Dashboard", findings: "Findings", rules: "Rules", terminals: "Terminals", audit: "Audit trail", users: "Users",
    login: "Log in", logout: "Log out", username: "Username", password: "Password",
    attested: "Sessions attested by terminals", claimed: "Sessions claimed", match_rate: "Match rate", phantom: "Phantom claims (not attested)",
    phantom_fen: "Phantom money (yuan)", fallback_rate: "Supervised-fallback rate", per_patient: "Claimed sessions per patient-month",
    findings_fen: "Money in findings (yuan)", red: "red", yellow: "yellow", green: "green", trend: "By month",
    region: "Region / hospital", peers: "Peers: claimed sessions per patient-month (dashed: median)", drill: "Drill down",
    severity: "Severity", rule: "Rule", status: "Status", hospital: "Hospital or region code", from: "From", to: "To",
    sort: "Sort", search: "Search", total: "Total", items: "", amount: "Amount (yuan)", patient: "Patient",
    date: "Date", explanation: "Explanation", prev: "Previous", next: "Next", page: "Page", export_csv: "Export CSV",
    export_xlsx: "Export Excel", any: "any", sort_sev: "by severity", sort_amount: "by amount", sort_date: "by date",
    case: "Case", records: "Signed terminal records", claim_lines: "Claim lines", plan: "五定 plan", calendar: "This month",
    history: "History", signature: "Signature", chain: "Chain position", log: "Transparency log", verified: "verified", failed: "FAILED",
    check_in: "Check-in", check_out: "Check-out", identity: "Identity", score: "fingerprint score", fallback: "supervised fallback",
    reason: "Reason", deduct_amount: "Deduction (yuan)", attachment: "Attachment", do: "Do it", reveal: "Reveal identifier",
    reveal_reason: "Why you need it (goes to the audit trail)", evidence: "Download evidence bundle", deadline: "Appeal deadline",
    no_actions: "Nothing you can do in this status.", not_found: "Not found", terminal: "Terminal",
    key_status: "Key status", version: "Version", whatif: "Threshold what-if", param: "Parameter", values: "Candidates (comma separated)",
    run: "Run", save_rules: "Save a new rules version", rules_toml: "Rules (TOML)", versions: "Versions",
    author: "Changed by", at: "At", last_contact: "Last contact", chain_head: "Chain head", skew: "Max clock skew",
    alarms: "Alarms", approve: "Approve", revoke: "Revoke", held: "Records waiting for predecessors", actor: "Actor", action: "Action",
    subject: "Subject", add_user: "Add a user", display_name: "Name", role: "Role", saved: "Saved",
    actions: { confirm: "Confirm (notify hospital)", dismiss: "Dismiss", appeal: "Appeal", accept: "Accept",
      uphold: "Uphold", withdraw: "Withdraw", escalate: "Send to expert panel", panel_uphold: "Panel: uphold",
      panel_withdraw: "Panel: withdraw", deduct: "Deduct" },
    statuses: { open: "machine finding", dismissed: "dismissed", notified: "hospital notified", appealed: "appealed",
      panel: "expert panel", upheld: "upheld", withdrawn: "withdrawn", deducted: "deducted" },
    roles: { auditor: "Auditor", senior_auditor: "Senior auditor (panel)", hospital: "Hospital user", admin: "Administrator" },
    patients: "Patients", patient_page: "Patient", record: "Signed record", months: "Months", month: "Month",
    plan_check: "五定 plan against what happened", planned: "Plan", actual: "Actual", ok: "as planned", source: "Source",
    held_here: "Waiting", findings_of_patient: "Findings about this patient", sort_attested: "by attested",
    sort_claimed: "by claimed", sort_phantom: "by phantom", no_plan: "no 五定 plan in force that day",
    items_: { hospital: "hospital", department: "department", doctor: "doctor", treatment: "treatment", drug: "drug", dose: "dose" },
    open_patient: "Open patient", all_findings: "all findings",
  },
};

let lang = localStorage.getItem("wuding.lang") || "zh";
let me = null;
const t = (k) => T[lang][k] ?? k;
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const yuan = (fen) => fen == null ? "" : (Number(fen) / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pct = (x) => x == null ? "–" : (x * 100).toFixed(1) + "%";
const when = (ms) => ms == null ? "" : new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
const sev = (s) => `<span class="sev ${esc(s)}">${esc(t(s))}</span>`;
const status = (s) => esc(T[lang].statuses[s] || s);
const $ = (sel) => document.querySelector(sel);
const main = () => $("#main");

function toast(msg, error) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = error ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET" && me) opts.headers["X-CSRF-Token"] = me.csrf_token;
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/v1/app/login") {
    me = null;
    location.hash = "#/login";
    throw new Error(data.message || "login required");
  }
  if (!res.ok) throw new Error(data.message || res.statusText);
  return data;
}

function params(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  return p.toString();
}

function route() {
  const h = location.hash.slice(1) || "/";
  const [path, query] = h.split("?");
  return { parts: path.split("/").filter(Boolean), query: Object.fromEntries(new URLSearchParams(query || "")) };
}

function navItems() {
  if (!me) return [];
  const r = me.user.role;
  const items = [];
  if (r !== "admin") items.push(["dashboard", "#/dashboard"], ["findings", "#/findings"]);
  if (r !== "hospital") items.push(["rules", "#/rules"], ["terminals", "#/terminals"]);
  if (r === "admin") items.push(["users", "#/users"], ["audit", "#/audit"]);
  return items;
}

function chrome() {
  const { parts } = route();
  $("#nav").innerHTML = navItems().map(([k, href]) =>
    `<a href="${href}" class="${parts[0] === k || (k === "findings" && parts[0] === "case") || (k === "dashboard" && ["patients", "patient", "record"].includes(parts[0])) ? "on" : ""}" data-nav="${k}">${esc(t(k))}</a>`).join("");
  $("#who").textContent = me ? `${me.user.display_name || me.user.username} · ${T[lang].roles[me.user.role] || me.user.role}${me.user.hospital_code ? " · " + me.user.hospital_code : ""}` : "";
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
  $("#logout").hidden = !me;
  $("#logout").textContent = t("logout");
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

let shownPath = null;

async function render() {
  try { await renderPage(); } finally {
    // A new page starts at its top; a re-render of the same page (a filter
    // changed) keeps the reader's place.
    const path = location.hash.split("?")[0];
    if (path !== shownPath) { shownPath = path; window.scrollTo(0, 0); }
  }
}

async function renderPage() {
  if (!me) {
    try { me = await api("GET", "/api/v1/app/me"); } catch (_) { me = null; }
  }
  const { parts, query } = route();
  if (!me && parts[0] !== "login") { location.hash = "#/login"; return; }
  chrome();
  const page = parts[0] || (me && me.user.role === "admin" ? "terminals" : "dashboard");
  try {
    switch (page) {
      case "login": return loginPage();
      case "dashboard": return await dashboardPage(query);
      case "findings": return await findingsPage(query);
      case "case": return await casePage(parts[1]);
      case "patients": return await patientsPage(query);
      case "patient": return await patientPage(parts[1], query);
      case "record": return await recordPage(parts[1]);
      case "rules": return await rulesPage();
      case "terminals": return await terminalsPage();
      case "users": return await usersPage();
      case "audit": return await auditPage();
      default: main().innerHTML = `<p>${esc(t("not_found"))}</p>`;
    }
  } catch (e) {
    main().innerHTML = `<div class="card bad" id="page-error">${esc(e.message)}</div>`;
  }
}

function loginPage() {
  main().innerHTML = `<form class="card login" id="login-form">
    <h1>五定 · ${esc(t("login"))}</h1>
    <label>${esc(t("username"))}<input name="username" id="username" autocomplete="username" required></label>
    <label>${esc(t("password"))}<input name="password" id="password" type="password" autocomplete="current-password" required></label>
    <button class="primary" id="login-button">${esc(t("login"))}</button>
    <p class="bad" id="login-error"></p></form>`;
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      me = await api("POST", "/api/v1/app/login", { username: $("#username").value, password: $("#password").value });
      location.hash = me.user.role === "admin" ? "#/terminals" : me.user.role === "hospital" ? "#/findings" : "#/dashboard";
    } catch (e) {
      $("#login-error").textContent = e.message;
    }
  });
}

// ---------------------------------------------------------------- charts

function barChart(rows, keys, colors, labelKey, opts = {}) {
  const w = 900, h = 220, pad = 40;
  const max = Math.max(1, ...rows.flatMap((r) => keys.map((k) => r[k] || 0)), opts.line || 0);
  const bw = rows.length ? Math.min(160, (w - pad * 2) / rows.length) : 0;
  let svg = `<svg class="chart" viewBox="0 0 ${w} ${h}" width="100%" role="img">`;
  rows.forEach((r, i) => {
    // A bar opens what it counts (opts.href(row)).
    if (opts.href) svg += `<a href="${esc(opts.href(r))}" class="bar-link">`;
    keys.forEach((k, j) => {
      const v = r[k] || 0, bh = (v / max) * (h - pad * 2), x = pad + i * bw + j * (bw / keys.length) + 2;
      svg += `<rect x="${x.toFixed(1)}" y="${(h - pad - bh).toFixed(1)}" width="${Math.max(1, bw / keys.length - 4).toFixed(1)}" height="${bh.toFixed(1)}" fill="${colors[j]}"><title>${esc(r[labelKey])} ${esc(k)}: ${esc(v)}</title></rect>`;
    });
    if (opts.href) svg += "</a>";
    svg += `<text x="${(pad + i * bw + bw / 2).toFixed(1)}" y="${h - pad + 14}" text-anchor="middle">${esc(String(r[labelKey]).slice(-7))}</text>`;
  });
  if (opts.line) {
    const y = h - pad - (opts.line / max) * (h - pad * 2);
    svg += `<line x1="${pad}" x2="${w - pad}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#c62828" stroke-dasharray="6 4"/>`;
  }
  svg += `<text x="4" y="${pad - 6}">${esc(max.toLocaleString())}</text></svg>`;
  return svg;
}

// ---------------------------------------------------------------- dashboard

async function dashboardPage(q) {
  const d = await api("GET", "/api/v1/app/dashboard?" + params({ region: q.region, from: q.from, to: q.to }));
  const s = d.total;
  // The period the numbers cover: as asked, or the one month loaded (a
  // single month lets the patient level read its rows without summing).
  const period = q.from || q.to ? { from: q.from, to: q.to }
    : d.months.length === 1 ? { from: d.months[0].month, to: d.months[0].month } : {};
  const tile = (k, v, id, href) =>
    `<a class="tile" id="${id}" href="${esc(href)}"><div class="v">${esc(v)}</div><div class="k">${esc(t(k))}</div></a>`;
  // Every number opens what it counts: findings (filtered to the region)
  // or the region's patients, each of whom opens to records and cases.
  const findingsOf = (code, extra) => "#/findings?" + params({ hospital: code, ...extra });
  const patientsOf = (code, sort) => "#/patients?" + params({ region: code, sort, ...period });
  const crumbs = [["", lang === "zh" ? "全部" : "all"]];
  const r = d.region || "";
  for (const n of [3, 5, 7, 12]) if (r.length >= n) crumbs.push([r.slice(0, n), r.slice(0, n)]);
  const isHospital = (code) => code.length >= 12;
  const childLink = (code) => isHospital(code)
    ? `<a href="${esc(patientsOf(code))}" class="drill-hospital">${esc(code)}</a> <a class="muted" href="${esc(findingsOf(code))}">(${esc(t("findings"))})</a>`
    : `<a href="#/dashboard?${esc(params({ region: code, ...period }))}">${esc(code)}</a>`;
  const num = (href, v) => `<a href="${esc(href)}">${esc(v)}</a>`;
  const perPatient = (x) => x.sessions_per_patient_month == null ? "–" : x.sessions_per_patient_month.toFixed(2);
  main().innerHTML = `<h1>${esc(t("dashboard"))}</h1>
    <p>${crumbs.map(([c, l]) => `<a href="#/dashboard?region=${esc(c)}">${esc(l)}</a>`).join(" › ")}</p>
    <div class="tiles">
      ${tile("attested", s.attested_sessions.toLocaleString(), "tile-attested", patientsOf(r, "attested"))}
      ${tile("claimed", s.claimed_lines.toLocaleString(), "tile-claimed", patientsOf(r, "claimed"))}
      ${tile("match_rate", pct(s.match_rate), "tile-match", findingsOf(r, { rule: "phantom_session" }))}
      ${tile("phantom", s.phantom_claims.toLocaleString(), "tile-phantom", findingsOf(r, { rule: "phantom_session" }))}
      ${tile("phantom_fen", yuan(s.phantom_fen), "tile-phantom-fen", findingsOf(r, { rule: "phantom_session", sort: "amount" }))}
      ${tile("fallback_rate", pct(s.fallback_rate), "tile-fallback", findingsOf(r, { rule: "supervised_fallback" }))}
      ${tile("per_patient", perPatient(s), "tile-per-patient", patientsOf(r, "claimed"))}
      ${tile("findings_fen", yuan(s.findings_fen), "tile-findings-fen", findingsOf(r, { sort: "amount" }))}
    </div>
    <div class="card"><h2>${esc(t("trend"))}</h2>
      ${barChart(d.months, ["attested_sessions", "claimed_lines", "phantom_claims"], ["#2e7d32", "#1f5f99", "#c62828"], "month", { href: (m) => "#/dashboard?" + params({ region: r, from: m.month, to: m.month }) })}
      <p class="muted">■ <span class="ok">${esc(t("attested"))}</span> ■ ${esc(t("claimed"))} ■ <span class="bad">${esc(t("phantom"))}</span></p></div>
    <div class="card"><h2>${esc(t("region"))}</h2>
      <table id="children"><tr><th>${esc(t("region"))}</th><th class="num">${esc(t("attested"))}</th><th class="num">${esc(t("claimed"))}</th><th class="num">${esc(t("match_rate"))}</th><th class="num">${esc(t("phantom"))}</th><th class="num">${esc(t("phantom_fen"))}</th><th class="num">${esc(t("fallback_rate"))}</th><th class="num">${esc(t("per_patient"))}</th><th class="num">${esc(t("red"))}/${esc(t("yellow"))}/${esc(t("green"))}</th></tr>
      ${d.children.map((c) => `<tr data-code="${esc(c.code)}"><td>${childLink(c.code)}</td>
        <td class="num">${num(patientsOf(c.code, "attested"), c.attested_sessions)}</td>
        <td class="num">${num(patientsOf(c.code, "claimed"), c.claimed_lines)}</td>
        <td class="num">${num(findingsOf(c.code, { rule: "phantom_session" }), pct(c.match_rate))}</td>
        <td class="num">${num(findingsOf(c.code, { rule: "phantom_session" }), c.phantom_claims)}</td>
        <td class="num">${num(findingsOf(c.code, { rule: "phantom_session", sort: "amount" }), yuan(c.phantom_fen))}</td>
        <td class="num">${num(findingsOf(c.code, { rule: "supervised_fallback" }), pct(c.fallback_rate))}</td>
        <td class="num">${num(patientsOf(c.code, "claimed"), perPatient(c))}</td>
        <td class="num">${num(findingsOf(c.code, { severity: "red" }), c.red)} / ${num(findingsOf(c.code, { severity: "yellow" }), c.yellow)} / ${num(findingsOf(c.code, { severity: "green" }), c.green)}</td></tr>`).join("")}
      </table></div>
    <div class="card"><h2>${esc(t("peers"))}</h2>
      ${barChart(d.hospitals.map((h) => ({ ...h, spp: h.sessions_per_patient_month || 0 })), ["spp"], ["#1f5f99"], "hospital_code", { line: d.peer_median_sessions_per_patient_month, href: (h) => patientsOf(h.hospital_code, "claimed") })}</div>`;
}

// ---------------------------------------------------------------- patients and records

async function patientsPage(q) {
  const page = Number(q.page || 0);
  const d = await api("GET", "/api/v1/app/patients?" + params({ region: q.region, from: q.from, to: q.to, sort: q.sort, page }));
  const opt = (v, label) => `<option value="${esc(v)}" ${v === (q.sort || "amount") ? "selected" : ""}>${esc(label)}</option>`;
  const link = (extra) => "#/patients?" + params({ ...q, ...extra });
  main().innerHTML = `<h1>${esc(t("patients"))} · <span id="patients-region">${esc(d.region || (lang === "zh" ? "全部" : "all"))}</span></h1>
    <p><a href="#/dashboard?${esc(params({ region: d.region.length >= 12 ? d.region.slice(0, 7) : d.region }))}">${esc(t("dashboard"))}</a> ·
      <a href="#/findings?${esc(params({ hospital: d.region }))}">${esc(t("findings"))}</a> ·
      <select id="p-sort">${opt("amount", t("sort_amount"))}${opt("attested", t("sort_attested"))}${opt("claimed", t("sort_claimed"))}${opt("phantom", t("sort_phantom"))}</select></p>
    <p>${esc(t("total"))} <b id="patients-total">${d.total.toLocaleString()}</b> ${esc(t("items"))}</p>
    <table id="patients-table"><tr><th>${esc(t("patient"))}</th><th>${esc(t("hospital"))}</th><th class="num">${esc(t("attested"))}</th><th class="num">${esc(t("claimed"))}</th><th class="num">${esc(t("phantom"))}</th><th class="num">${esc(t("fallback_rate"))}</th><th class="num">${esc(t("red"))}/${esc(t("yellow"))}/${esc(t("green"))}</th><th class="num">${esc(t("findings_fen"))}</th></tr>
      ${d.rows.map((p) => `<tr class="click" data-ref="${esc(p.patient_ref)}"><td class="masked"><a href="#/patient/${esc(p.patient_ref)}">${esc(p.insured_id)}</a></td><td>${esc(p.hospital_code)}</td>
        <td class="num">${p.attested_sessions}</td><td class="num">${p.claimed_lines}</td><td class="num">${p.phantom_claims}</td><td class="num">${pct(p.fallback_rate)}</td>
        <td class="num">${p.red} / ${p.yellow} / ${p.green}</td><td class="num">${yuan(p.findings_fen)}</td></tr>`).join("")}
    </table>
    <div class="pager"><a id="prev" ${page <= 0 ? "hidden" : ""} href="${esc(link({ page: page - 1 }))}">${esc(t("prev"))}</a>
      <span>${esc(t("page"))} ${page + 1} / ${Math.max(1, Math.ceil(d.total / d.per_page))}</span>
      <a id="next" ${(page + 1) * d.per_page >= d.total ? "hidden" : ""} href="${esc(link({ page: page + 1 }))}">${esc(t("next"))}</a></div>`;
  $("#p-sort").addEventListener("change", (ev) => { location.hash = link({ sort: ev.target.value, page: 0 }); });
  document.querySelectorAll("#patients-table tr.click").forEach((tr) => tr.addEventListener("click", () => { location.hash = "#/patient/" + tr.dataset.ref; }));
}

function planCheckTable(checks) {
  if (!checks || !checks.length) return `<p class="muted">–</p>`;
  return checks.map((c) => `<h3>${c.source === "attested" ? "✔ " + esc(t("record")) : "¥ " + esc(t("claim_lines"))} <code>${esc(c.id.length > 20 ? c.id.slice(0, 16) + "…" : c.id)}</code> · ${esc(c.date)}${c.plan_id ? " · " + esc(c.plan_id) : ""}</h3>
    ${c.plan_id ? `<table class="plan-check"><tr><th></th><th>${esc(t("planned"))}</th><th>${esc(t("actual"))}</th><th></th></tr>
      ${c.lines.map((l) => `<tr class="${l.ok ? "" : "breach"}" data-item="${esc(l.item)}"><td>${esc(T[lang].items_[l.item] || l.item)}</td><td>${esc(l.planned)}</td><td>${esc(l.actual)}</td>
        <td class="${l.ok ? "ok" : "bad"}">${l.ok ? "✔ " + esc(t("ok")) : "✘ " + esc(lang === "zh" ? l.breach_zh : l.breach_en)}</td></tr>`).join("")}</table>`
      : `<p class="bad">${esc(t("no_plan"))}</p>`}`).join("");
}

function recordRow(r) {
  if (!r.found) return `<tr><td colspan="6">${esc(r.record_id.slice(0, 16))}… <span class="bad">${esc(t("not_found"))}</span></td></tr>`;
  const s = r.record || {};
  return `<tr class="record"><td><a href="#/record/${esc(r.record_id)}"><code>${esc(r.record_id.slice(0, 16))}…</code></a><br>${esc(t("terminal"))} ${esc(r.terminal_id)}</td>
    <td class="${r.signature_ok ? "ok" : "bad"} sig">${esc(r.signature_ok ? t("verified") : t("failed"))}<br><span class="muted">${esc(t("key_status"))}: ${esc(r.key_status)}</span></td>
    <td>#${esc(r.seq)}</td>
    <td class="${r.inclusion_ok ? "ok" : "bad"} incl">${esc(r.inclusion_ok ? t("verified") : t("failed"))}<br><span class="muted">index ${esc(r.log_index)}${r.checkpoint ? " / size " + esc(r.checkpoint.size) : ""}</span></td>
    <td>${esc(t("check_in"))}: ${identity(s.check_in)}<br>${esc(t("check_out"))}: ${identity(s.check_out)}</td>
    <td>${esc(s.treatment ? s.treatment.kind + " " + (s.treatment.drug_code || "") : "")} ${s.charge ? "· ¥" + yuan(s.charge.total_fen) : ""}<br><span class="muted">${esc(s.hospital_code || "")} ${esc(s.department_code || "")} · ${esc(s.doctor_id || "")} · ${esc(s.nurse_id || "")}</span></td></tr>`;
}

function recordsTable(rows) {
  return `<table id="records"><tr><th>ID</th><th>${esc(t("signature"))}</th><th>${esc(t("chain"))}</th><th>${esc(t("log"))}</th><th>${esc(t("identity"))}</th><th></th></tr>${rows.map(recordRow).join("") || `<tr><td colspan="6" class="muted">–</td></tr>`}</table>`;
}

async function patientPage(ref, q) {
  const d = await api("GET", `/api/v1/app/patients/${encodeURIComponent(ref)}?` + params({ month: q.month }));
  const calLinks = d.calendar.filter((e) => e.source === "attested");
  main().innerHTML = `<h1>${esc(t("patient_page"))} <span class="masked" id="patient-masked">${esc(d.insured_id)}</span> · ${esc(d.month)}</h1>
    <div class="card"><h2>${esc(t("months"))}</h2><table id="patient-months"><tr><th>${esc(t("month"))}</th><th>${esc(t("hospital"))}</th><th class="num">${esc(t("attested"))}</th><th class="num">${esc(t("claimed"))}</th><th class="num">${esc(t("phantom"))}</th><th class="num">${esc(t("red"))}/${esc(t("yellow"))}/${esc(t("green"))}</th><th class="num">${esc(t("findings_fen"))}</th></tr>
      ${d.months.map((m) => `<tr><td><a href="#/patient/${esc(ref)}?month=${esc(m.month)}">${esc(m.month)}</a></td><td><a href="#/patients?region=${esc(m.hospital_code)}">${esc(m.hospital_code)}</a></td><td class="num">${m.attested_sessions}</td><td class="num">${m.claimed_lines}</td><td class="num">${m.phantom_claims}</td><td class="num">${m.red} / ${m.yellow} / ${m.green}</td><td class="num">${yuan(m.findings_fen)}</td></tr>`).join("")}</table></div>
    <div class="cols">
      <div class="card"><h2>${esc(t("calendar"))}</h2>${calendar(d.calendar, d.month + "-01")}</div>
      <div class="card"><h2>${esc(t("records"))} / ${esc(t("claim_lines"))}</h2><table id="patient-entries"><tr><th>${esc(t("date"))}</th><th>${esc(t("source"))}</th><th></th><th>ID</th><th class="num">${esc(t("amount"))}</th></tr>
        ${d.calendar.map((e) => `<tr class="${e.source === "attested" ? "attested" : "claimed"}"><td>${esc(e.date)}</td><td>${e.source === "attested" ? "✔ " + esc(t("attested")) : "¥ " + esc(t("claimed"))}</td><td>${esc(e.kind)} ${esc(e.hospital_code)}</td>
          <td>${e.source === "attested" ? `<a class="record-link" href="#/record/${esc(e.id)}"><code>${esc(e.id.slice(0, 12))}…</code></a>` : esc(e.id)}</td><td class="num">${yuan(e.amount_fen)}</td></tr>`).join("") || `<tr><td colspan="5" class="muted">–</td></tr>`}</table>
        <p class="muted">${calLinks.length} ${esc(t("attested"))}</p></div>
    </div>
    <div class="card"><h2>${esc(t("findings_of_patient"))} (${d.findings_total})</h2>
      <table id="patient-findings"><tr><th>${esc(t("severity"))}</th><th>${esc(t("rule"))}</th><th>${esc(t("date"))}</th><th>${esc(t("hospital"))}</th><th class="num">${esc(t("amount"))}</th><th>${esc(t("status"))}</th></tr>
      ${d.findings.map((f) => `<tr class="click" data-id="${esc(f.id)}"><td>${sev(f.severity)}</td><td><a href="#/case/${esc(f.id)}">${esc(f.rule_id)}</a></td><td>${esc(f.service_date || "")}</td><td>${esc(f.hospital_code || "")}</td><td class="num">${yuan(f.amount_fen)}</td><td>${status(f.status)}</td></tr>`).join("")}</table>
      <p><a href="#/findings?patient=${esc(ref)}" id="patient-all-findings">${esc(t("all_findings"))}</a></p></div>
    <div class="card"><h2>${esc(t("plan"))}</h2>${d.plans.map((p) => `<pre>${esc(JSON.stringify(p, null, 1))}</pre>`).join("") || "<p class='muted'>–</p>"}</div>`;
  document.querySelectorAll("#patient-findings tr.click").forEach((tr) => tr.addEventListener("click", () => { location.hash = "#/case/" + tr.dataset.id; }));
}

async function recordPage(id) {
  const d = await api("GET", `/api/v1/app/records/${encodeURIComponent(id)}`);
  main().innerHTML = `<h1>${esc(t("record"))} <code>${esc(id.slice(0, 16))}…</code></h1>
    <p><a href="#/patient/${esc(d.patient_ref)}?month=${esc(d.service_date.slice(0, 7))}" id="record-patient">${esc(t("open_patient"))}</a> · ${esc(d.service_date)} · ${esc(d.hospital_code)}</p>
    <div class="card">${recordsTable([d.record])}</div>
    <div class="card" id="plan-check"><h2>${esc(t("plan_check"))}</h2>${planCheckTable(d.plan_checks)}</div>
    <div class="card"><h2>JSON</h2><pre id="record-json">${esc(JSON.stringify(d.record.record, null, 1))}</pre></div>`;
}

// ---------------------------------------------------------------- findings

async function findingsPage(q) {
  const page = Number(q.page || 0);
  const data = await api("GET", "/api/v1/app/findings?" + params({ ...q, page }));
  const opt = (v, label, cur) => `<option value="${esc(v)}" ${v === (cur || "") ? "selected" : ""}>${esc(label)}</option>`;
  const exportQ = params({ ...q, page: undefined });
  const fund = me.user.role === "auditor" || me.user.role === "senior_auditor";
  main().innerHTML = `<h1>${esc(t("findings"))}</h1>
    <form class="filters card" id="filters">
      <label>${esc(t("severity"))}<select name="severity" id="f-severity">${opt("", t("any"), q.severity)}${["red", "yellow", "green"].map((s) => opt(s, t(s), q.severity)).join("")}</select></label>
      <label>${esc(t("rule"))}<input name="rule" id="f-rule" value="${esc(q.rule || "")}" placeholder="phantom_session"></label>
      <label>${esc(t("status"))}<select name="status" id="f-status">${opt("", t("any"), q.status)}${Object.keys(T.zh.statuses).map((s) => opt(s, T[lang].statuses[s], q.status)).join("")}</select></label>
      ${me.user.role === "hospital" ? "" : `<label>${esc(t("hospital"))}<input name="hospital" id="f-hospital" value="${esc(q.hospital || "")}" placeholder="H5101"></label>`}
      <label>${esc(t("from"))}<input name="from" type="date" value="${esc(q.from || "")}"></label>
      <label>${esc(t("to"))}<input name="to" type="date" value="${esc(q.to || "")}"></label>
      <label>${esc(t("sort"))}<select name="sort">${opt("", t("sort_sev"), q.sort)}${opt("amount", t("sort_amount"), q.sort)}${opt("date", t("sort_date"), q.sort)}</select></label>
      <button class="primary" id="f-search">${esc(t("search"))}</button>
      ${fund ? `<a href="/api/v1/app/export?${exportQ}&format=csv" id="export-csv">${esc(t("export_csv"))}</a> <a href="/api/v1/app/export?${exportQ}&format=xlsx" id="export-xlsx">${esc(t("export_xlsx"))}</a>` : ""}
    </form>
    <p id="totals">${esc(t("total"))} <b id="total-count">${data.total.toLocaleString()}</b> ${esc(t("items"))} · ${esc(t("amount"))} <b>${yuan(data.total_fen)}</b>
      ${["red", "yellow", "green"].map((s) => data.by_severity[s] ? ` · ${sev(s)} ${data.by_severity[s].findings} / ${yuan(data.by_severity[s].amount_fen)}` : "").join("")}</p>
    <table id="findings-table"><tr><th>${esc(t("severity"))}</th><th>${esc(t("rule"))}</th><th>${esc(t("date"))}</th><th>${esc(t("hospital"))}</th><th>${esc(t("patient"))}</th><th class="num">${esc(t("amount"))}</th><th>${esc(t("status"))}</th><th>${esc(t("explanation"))}</th></tr>
      ${data.rows.map((f) => `<tr class="click" data-id="${esc(f.id)}"><td>${sev(f.severity)}</td><td>${esc(f.rule_id)}</td><td>${esc(f.service_date || "")}</td><td>${esc(f.hospital_code || "")}</td><td class="masked">${esc(f.insured_id || "")}</td><td class="num">${yuan(f.amount_fen)}</td><td>${status(f.status)}</td><td>${esc(lang === "zh" ? f.explanation_zh : f.explanation_en)}</td></tr>`).join("")}
    </table>
    <div class="pager"><button id="prev" ${page <= 0 ? "disabled" : ""}>${esc(t("prev"))}</button>
      <span>${esc(t("page"))} ${page + 1} / ${Math.max(1, Math.ceil(data.total / data.per_page))}</span>
      <button id="next" ${(page + 1) * data.per_page >= data.total ? "disabled" : ""}>${esc(t("next"))}</button></div>`;
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target));
    location.hash = "#/findings?" + params(f);
  });
  document.querySelectorAll("#findings-table tr.click").forEach((tr) => tr.addEventListener("click", () => { location.hash = "#/case/" + tr.dataset.id; }));
  $("#prev").addEventListener("click", () => { location.hash = "#/findings?" + params({ ...q, page: page - 1 }); });
  $("#next").addEventListener("click", () => { location.hash = "#/findings?" + params({ ...q, page: page + 1 }); });
}

// ---------------------------------------------------------------- case

function identity(a) {
  if (!a) return "–";
  const id = a.identity || {};
  if (id.method === "fingerprint") {
    return `${esc(when(a.at_ms))} · ${esc(t("score"))} ${esc(id.score)} (${esc(id.attempts)}×)`;
  }
  return `${esc(when(a.at_ms))} · <span class="bad fallback">${esc(t("fallback"))}</span> ${esc(id.reason)} · ${esc(id.witness_id)}`;
}

function calendar(entries, date) {
  if (!date) return "";
  const [y, m] = date.split("-").map(Number);
  const first = new Date(Date.UTC(y, m - 1, 1)).getUTCDay();
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  let cells = "";
  for (let i = 0; i < (first + 6) % 7; i++) cells += "<div></div>";
  for (let d = 1; d <= days; d++) {
    const ds = `${y}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
    const es = entries.filter((e) => e.date === ds);
    cells += `<div class="${es.some((e) => e.mine) ? "mine" : ""}"><b>${d}</b>${es.map((e) => `<br><span class="${e.source === "attested" ? "a" : "c"}">${e.source === "attested" ? "✔" : "¥"} ${esc(e.kind)}</span>`).join("")}</div>`;
  }
  return `<div class="cal">${["一", "二", "三", "四", "五", "六", "日"].map((d) => `<div><b>${lang === "zh" ? d : ""}</b></div>`).join("")}${cells}</div>
    <p class="muted"><span class="ok">✔</span> ${esc(t("attested"))} · ¥ ${esc(t("claimed"))}</p>`;
}

async function casePage(id) {
  const c = await api("GET", "/api/v1/app/findings/" + encodeURIComponent(id));
  const f = c.finding;
  const fund = me.user.role === "auditor" || me.user.role === "senior_auditor";
  const actionForm = c.actions.length ? `<form id="action-form" class="card"><h2>${esc(t("do"))}</h2>
      <label>${esc(t("action"))}<select id="a-action">${c.actions.map((a) => `<option value="${esc(a)}">${esc(T[lang].actions[a] || a)}</option>`).join("")}</select></label>
      <label>${esc(t("reason"))}<textarea id="a-reason" required></textarea></label>
      <label id="a-amount-label">${esc(t("deduct_amount"))}<input id="a-amount" type="number" step="0.01" min="0.01" value="${(f.amount_fen / 100).toFixed(2)}"></label>
      ${c.actions.includes("appeal") ? `<label>${esc(t("attachment"))}<input id="a-file" type="file"></label>` : ""}
      <button class="act" id="a-submit">${esc(t("do"))}</button></form>` : `<p class="muted" id="no-actions">${esc(t("no_actions"))}</p>`;
  main().innerHTML = `<h1>${esc(t("case"))} <code>${esc(f.id)}</code> ${sev(f.severity)} <span id="case-status">${status(f.status)}</span></h1>
    <div class="card"><p><b>${esc(f.rule_id)}</b> · ${esc(f.service_date || "")} · ${esc(f.hospital_code || "")} · ${esc(t("patient"))} <span id="patient-id">${esc(f.insured_id || "")}</span>
      ${fund && f.insured_id ? ` <button class="link" id="reveal">${esc(t("reveal"))}</button>` : ""}
      ${c.patient_ref ? ` · <a href="#/patient/${esc(c.patient_ref)}?month=${esc((f.service_date || "").slice(0, 7))}" id="patient-link">${esc(t("open_patient"))}</a>` : ""}
      · ${esc(t("amount"))} <b>${yuan(f.amount_fen)}</b>${c.appeal_deadline_ms ? ` · ${esc(t("deadline"))} ${esc(when(c.appeal_deadline_ms))}` : ""}</p>
      <p>${esc(lang === "zh" ? f.explanation_zh : f.explanation_en)}</p>
      <p class="muted">${Object.entries(f.params || {}).map(([k, v]) => `${esc(k)} = ${esc(v)}`).join(" · ")}</p>
      <a href="/api/v1/app/findings/${esc(f.id)}/evidence" id="evidence-link">${esc(t("evidence"))}</a></div>
    ${actionForm}
    <div class="cols">
      <div class="card"><h2>${esc(t("claim_lines"))}</h2><table id="claims"><tr><th>ID</th><th>${esc(t("date"))}</th><th></th><th class="num">${esc(t("amount"))}</th></tr>
        ${c.claims.map((l) => `<tr><td>${esc(l.id)}</td><td>${esc(l.date)}</td><td>${esc(l.kind)} ${esc(l.service_code)} ×${esc(l.quantity)}<br><span class="muted">${esc(l.hospital_code)} ${esc(l.department_code)} · ${esc(l.doctor_id)}${l.drug_code ? " · " + esc(l.drug_code) + " " + esc(l.dose || "") : ""}</span></td><td class="num">${yuan(l.amount_fen)}</td></tr>`).join("") || `<tr><td colspan="4" class="muted">–</td></tr>`}</table></div>
      <div class="card"><h2>${esc(t("calendar"))}</h2>${calendar(c.calendar, f.service_date)}</div>
    </div>
    <div class="card"><h2>${esc(t("records"))}</h2>${recordsTable(c.records)}</div>
    <div class="card" id="plan-check"><h2>${esc(t("plan_check"))}</h2>${planCheckTable(c.plan_checks)}</div>
    <div class="card"><h2>${esc(t("plan"))}</h2>${c.plans.map((p) => `<pre>${esc(JSON.stringify(p, null, 1))}</pre>`).join("") || "<p class='muted'>–</p>"}</div>
    <div class="card"><h2>${esc(t("history"))}</h2><ol class="timeline" id="history">
      <li>${esc(when(f.first_seen_ms))} · ${esc(T[lang].statuses.open)} (机审)</li>
      ${c.events.map((e, i) => `<li>${esc(when(e.at_ms))} · <b>${esc(T[lang].actions[e.action] || e.action)}</b> · ${esc(e.actor)} (${esc(T[lang].roles[e.actor_role] || e.actor_role)}) · ${status(e.from_status)} → ${status(e.to_status)} · ${esc(e.reason)}${e.amount_fen != null ? " · ¥" + yuan(e.amount_fen) : ""}${e.attachment_name ? ` · <a href="/api/v1/app/findings/${esc(f.id)}/attachments/${i}">${esc(e.attachment_name)}</a>` : ""}</li>`).join("")}
    </ol></div>`;
  const amountLabel = $("#a-amount-label");
  const syncAmount = () => { if (amountLabel) amountLabel.hidden = $("#a-action").value !== "deduct"; };
  if (amountLabel) { syncAmount(); $("#a-action").addEventListener("change", syncAmount); }
  const form = $("#action-form");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const action = $("#a-action").value;
    const body = { action, reason: $("#a-reason").value };
    if (action === "deduct") body.amount_fen = Math.round(Number($("#a-amount").value) * 100);
    const file = $("#a-file") && $("#a-file").files[0];
    if (file && action === "appeal") {
      const buf = new Uint8Array(await file.arrayBuffer());
      let bin = "";
      for (let i = 0; i < buf.length; i += 0x8000) bin += String.fromCharCode.apply(null, buf.subarray(i, i + 0x8000));
      body.attachment_name = file.name;
      body.attachment_base64 = btoa(bin);
    }
    try {
      const r = await api("POST", `/api/v1/app/findings/${encodeURIComponent(f.id)}/actions`, body);
      toast(`${T[lang].actions[action] || action} → ${T[lang].statuses[r.status] || r.status}`);
      await render();
    } catch (e) { toast(e.message, true); }
  });
  const rv = $("#reveal");
  if (rv) rv.addEventListener("click", async () => {
    const reason = prompt(t("reveal_reason"));
    if (!reason) return;
    try {
      const r = await api("POST", `/api/v1/app/findings/${encodeURIComponent(f.id)}/reveal`, { reason });
      $("#patient-id").textContent = r.insured_id;
    } catch (e) { toast(e.message, true); }
  });
}

// ---------------------------------------------------------------- rules

async function rulesPage() {
  const d = await api("GET", "/api/v1/app/rules");
  const fund = me.user.role === "auditor" || me.user.role === "senior_auditor";
  main().innerHTML = `<h1>${esc(t("rules"))} <span class="muted">${esc(t("version"))} ${esc(d.version)}</span></h1>
    <table id="rules-table"><tr><th>ID</th><th>${esc(t("severity"))}</th><th></th><th>${esc(t("param"))}</th></tr>
      ${d.rules.map((r) => `<tr><td><code>${esc(r.id)}</code></td><td>${r.severity && r.enabled ? sev(r.severity) : "–"}</td><td><b>${esc(r.title[lang])}</b><br><span class="muted">${esc(r.description[lang])}</span></td><td>${Object.entries(r.params).map(([k, v]) => `${esc(k)} = ${esc(v)}`).join("<br>")}</td></tr>`).join("")}</table>
    ${fund ? `<form class="card" id="whatif-form"><h2>${esc(t("whatif"))}</h2><div class="filters">
      <label>${esc(t("rule"))}<input id="w-rule" value="short_dialysis"></label>
      <label>${esc(t("param"))}<input id="w-param" value="min_minutes"></label>
      <label>${esc(t("values"))}<input id="w-values" size="40" value="{ HD = 150 }, { HD = 180 }, { HD = 210 }"></label>
      <label>${esc(t("from"))}<input id="w-from" type="date" required></label><label>${esc(t("to"))}<input id="w-to" type="date" required></label>
      <button class="primary" id="w-run">${esc(t("run"))}</button></div><div id="whatif-result"></div></form>` : ""}
    ${me.user.role === "senior_auditor" ? `<form class="card" id="save-rules"><h2>${esc(t("save_rules"))}</h2>
      <label>${esc(t("rules_toml"))}<textarea id="r-toml" rows="12"></textarea></label>
      <label>${esc(t("reason"))}<input id="r-reason" required></label><button class="primary">${esc(t("save_rules"))}</button></form>` : ""}
    <div class="card"><h2>${esc(t("versions"))}</h2><table><tr><th>${esc(t("version"))}</th><th>${esc(t("author"))}</th><th>${esc(t("reason"))}</th><th>${esc(t("at"))}</th></tr>
      ${d.versions.map((v) => `<tr><td>${esc(v.version)}</td><td>${esc(v.author)}</td><td>${esc(v.reason)}</td><td>${esc(when(v.at_ms))}</td></tr>`).join("")}</table></div>`;
  const wf = $("#whatif-form");
  if (wf) wf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = $("#w-values").value.split(/,(?![^{[]*[}\]])/).map((s) => s.trim()).filter(Boolean);
    try {
      const r = await api("POST", "/api/v1/app/rules/whatif", { rule: $("#w-rule").value, param: $("#w-param").value, values, from: $("#w-from").value, to: $("#w-to").value });
      $("#whatif-result").innerHTML = `<table id="whatif-table"><tr><th>${esc(t("values"))}</th><th class="num">${esc(t("findings"))}</th><th class="num">${esc(t("amount"))}</th></tr>
        ${r.rows.map((x) => `<tr><td>${esc(x.value)}</td><td class="num">${x.findings}</td><td class="num">${yuan(x.amount_fen)}</td></tr>`).join("")}</table>
        ${barChart(r.rows, ["findings"], ["#1f5f99"], "value")}`;
    } catch (e) { toast(e.message, true); }
  });
  const sr = $("#save-rules");
  if (sr) {
    $("#r-toml").value = d.default_toml;
    sr.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { const r = await api("POST", "/api/v1/app/rules", { toml: $("#r-toml").value, reason: $("#r-reason").value }); toast(`${t("saved")}: ${r.version}`); await render(); } catch (e) { toast(e.message, true); }
    });
  }
}

// ---------------------------------------------------------------- terminals, users, audit

async function terminalsPage() {
  const d = await api("GET", "/api/v1/app/terminals");
  const admin = me.user.role === "admin";
  main().innerHTML = `<h1>${esc(t("terminals"))}</h1><p>${esc(t("held"))}: <b>${d.held_records}</b></p>
    <table id="terminals-table"><tr><th>${esc(t("terminal"))}</th><th>${esc(t("hospital"))}</th><th>${esc(t("status"))}</th><th>${esc(t("last_contact"))}</th><th class="num">${esc(t("chain_head"))}</th><th class="num">${esc(t("held_here"))}</th><th class="num">${esc(t("skew"))}</th><th class="num">${esc(t("alarms"))}</th><th></th></tr>
    ${d.terminals.map((x) => `<tr><td>${esc(x.terminal_id)}<br><code class="muted">${esc(x.key_id)}</code></td><td>${esc(x.hospital_code)} ${esc(x.department_code)}</td><td>${esc(x.status)}</td><td>${esc(when(x.last_contact_ms))}</td><td class="num">${x.chain_head}</td><td class="num held ${x.held_records ? "bad" : ""}" data-terminal="${esc(x.terminal_id)}">${x.held_records}</td><td class="num">${x.max_clock_skew_ms == null ? "–" : (x.max_clock_skew_ms / 60000).toFixed(1) + " min"}</td><td class="num">${x.alarms}</td>
      <td>${admin && x.status === "pending" ? `<button class="act" data-approve="${esc(x.terminal_id)}">${esc(t("approve"))}</button>` : ""}${admin && x.status !== "revoked" ? ` <button class="act danger" data-revoke="${esc(x.terminal_id)}">${esc(t("revoke"))}</button>` : ""}</td></tr>`).join("")}</table>`;
  document.querySelectorAll("[data-approve],[data-revoke]").forEach((b) => b.addEventListener("click", async () => {
    const approve = !!b.dataset.approve, id = b.dataset.approve || b.dataset.revoke;
    if (!approve && !confirm(`${t("revoke")} ${id}?`)) return;
    try { await api("POST", `/api/v1/app/terminals/${encodeURIComponent(id)}/${approve ? "approve" : "revoke"}`); await render(); } catch (e) { toast(e.message, true); }
  }));
}

async function usersPage() {
  const d = await api("GET", "/api/v1/app/users");
  main().innerHTML = `<h1>${esc(t("users"))}</h1>
    <table id="users-table"><tr><th>${esc(t("username"))}</th><th>${esc(t("display_name"))}</th><th>${esc(t("role"))}</th><th>${esc(t("hospital"))}</th></tr>
    ${d.users.map((u) => `<tr><td>${esc(u.username)}</td><td>${esc(u.display_name)}</td><td>${esc(T[lang].roles[u.role] || u.role)}</td><td>${esc(u.hospital_code || "")}</td></tr>`).join("")}</table>
    <form class="card filters" id="user-form"><h2>${esc(t("add_user"))}</h2>
      <label>${esc(t("username"))}<input name="username" required></label><label>${esc(t("display_name"))}<input name="display_name"></label>
      <label>${esc(t("role"))}<select name="role">${Object.keys(T.zh.roles).map((r) => `<option value="${r}">${esc(T[lang].roles[r])}</option>`).join("")}</select></label>
      <label>${esc(t("hospital"))}<input name="hospital_code"></label><label>${esc(t("password"))}<input name="password" type="password" required minlength="10"></label>
      <button class="primary">${esc(t("add_user"))}</button></form>`;
  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target));
    try { await api("POST", "/api/v1/app/users", f); toast(t("saved")); await render(); } catch (e) { toast(e.message, true); }
  });
}

async function auditPage() {
  const d = await api("GET", "/api/v1/app/audit?limit=500");
  main().innerHTML = `<h1>${esc(t("audit"))}</h1><table id="audit-table"><tr><th>${esc(t("at"))}</th><th>${esc(t("actor"))}</th><th>${esc(t("action"))}</th><th>${esc(t("subject"))}</th><th>${esc(t("reason"))}</th></tr>
    ${d.entries.map((e) => `<tr><td>${esc(when(e.at_ms))}</td><td>${esc(e.actor)}</td><td>${esc(e.action)}</td><td>${esc(e.subject)}</td><td>${esc(e.reason)}</td></tr>`).join("")}</table>`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("wuding.lang", lang); render(); });
  $("#logout").addEventListener("click", async () => { try { await api("POST", "/api/v1/app/logout"); } catch (_) { } me = null; location.hash = "#/login"; });
  window.addEventListener("hashchange", render);
  render();
});
