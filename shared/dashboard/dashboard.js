// Identity Mover dashboard: plain JavaScript over the HTTP API (no build step, nothing fetched
// from outside the app). The function key the page was opened with (?code=) goes on every call.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const KEY = new URLSearchParams(window.location.search).get("code");
  const POLL_MS = config.pollMilliseconds || 2000;
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let listPages = [];   // URLs of the pages seen, for "Newer"
  let nextLink = null;

  function withKey(url) {
    if (!KEY || /[?&]code=/.test(url)) return url;
    return url + (url.includes("?") ? "&" : "?") + "code=" + encodeURIComponent(KEY);
  }
  async function api(path, options) {
    const response = await fetch(withKey(path), Object.assign({ headers: { Accept: "application/json" } }, options));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const error = (body && body.error) || { code: String(response.status), message: response.statusText };
      throw Object.assign(new Error(error.message), { code: error.code, status: response.status });
    }
    return body;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function when(value) {
    if (!value) return "–";
    const date = new Date(value);
    if (isNaN(date)) return String(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }
  function duration(start, end) {
    if (!start) return "";
    const ms = (end ? new Date(end) : new Date()) - new Date(start);
    if (!(ms >= 0)) return "";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }
  function badge(status) {
    return el("span", { class: "badge s-" + status, "data-status": status, text: status });
  }
  function party(p) {
    if (!p || !p.name) return "–";
    return p.name + (p.location ? " (" + p.location + ")" : "");
  }
  function progress(move) {
    const phase = (move.phases || []).find((p) => p.name === move.phase);
    if (!phase || !phase.items) return "";
    const i = phase.items;
    return i.done + "/" + i.total + (i.failed ? ", " + i.failed + " failed" : "");
  }
  function setState(id, text) { $(id).textContent = text || ""; }
  function stopPolling() { if (timer) { clearTimeout(timer); timer = null; } }

  // ---- the list ---------------------------------------------------------------------------
  function listUrl() {
    const params = new URLSearchParams();
    const status = $("filter-status").value;
    const region = $("filter-region").value.trim();
    if (status) params.set("status", status);
    if (region) params.set("sourceRegion", region);
    params.set("top", String(config.pageSize || 25));
    return config.apiBase + "/moves?" + params.toString();
  }
  async function showList(url) {
    stopPolling();
    $("move-view").hidden = true;
    $("list-view").hidden = false;
    document.title = "Moves · Identity Mover";
    setState("list-state", "Loading…");
    let page;
    try {
      page = await api(url);
    } catch (error) {
      setState("list-state", "Could not load the moves: " + (error.code || "") + " " + error.message);
      return;
    }
    const moves = (page.value || []).slice().sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
    const body = $("moves").tBodies[0];
    body.replaceChildren(...moves.map((move) => {
      const link = el("a", { href: "#/moves/" + encodeURIComponent(move.id), text: move.id });
      return el("tr", { "data-move-id": move.id },
        el("td", {}, badge(move.status)),
        el("td", {}, el("div", {}, party(move.source), " → ", party(move.target)), el("div", { class: "sub mono" }, link)),
        el("td", { text: move.phase || "–" }),
        el("td", { text: progress(move) }),
        el("td", { text: when(move.createdAt) }),
        el("td", { text: when(move.updatedAt) }));
    }));
    nextLink = page.nextLink || null;
    $("next-page").disabled = !nextLink;
    $("prev-page").disabled = listPages.length <= 1;
    setState("list-state", moves.length ? moves.length + " moves on this page" + (nextLink ? "; older moves on the next page" : "") : "No moves match.");
    if (moves.some((m) => m.status === "Pending" || m.status === "Running")) {
      timer = setTimeout(() => showList(url), POLL_MS * 2);
    }
  }
  function startList() {
    listPages = [listUrl()];
    showList(listPages[0]);
  }

  // ---- one move ---------------------------------------------------------------------------
  const CONFIRM = {
    commit: (m) => "Commit move " + m.id + ": the old identity " + ((m.source || {}).name || "") +
      ", its grants and its attachments will be deleted. The new identity " + ((m.target || {}).name || "") +
      " keeps everything that was copied. This cannot be undone.",
    cancel: (m) => "Cancel move " + m.id + ": it stops at the next step boundary. What it created so far stays " +
      "until you discard the move; the old identity is not touched.",
    retry: (m) => "Retry move " + m.id + ": it resumes from the " + m.phase + " phase, and its failed items are tried again.",
    discard: (m) => "Discard move " + m.id + ": what it created (the new identity " + ((m.target || {}).name || "") +
      ", its grants and attachments) will be removed. The old identity is kept exactly as it was.",
  };
  let current = null;

  function renderSummary(move) {
    const rows = [
      ["Status", badge(move.status)],
      ["Source", el("span", {}, party(move.source), el("div", { class: "sub mono", text: (move.source || {}).id || "" }))],
      ["Target", el("span", {}, party(move.target), el("div", { class: "sub mono", text: (move.target || {}).id || "" }))],
      ["Current phase", (move.phase || "–") + (progress(move) ? " · " + progress(move) + " items" : "")],
      ["Started", when(move.createdAt)],
      ["Updated", when(move.updatedAt)],
    ];
    if (move.dryRun) rows.push(["Mode", "dry run"]);
    if (move.autoCommit) rows.push(["Commit", "automatic"]);
    if (move.commitDeadline) rows.push(["Commit deadline", when(move.commitDeadline) + " (then " + (((move.request || {}).commitPolicy) || {}).onTimeout + ")"]);
    if (move.commitTimeout) rows.push(["Commit policy", move.commitTimeout.outcome + " at " + when(move.commitTimeout.at)]);
    $("move-summary").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }
  function renderActions(move) {
    for (const button of document.querySelectorAll("[data-command]")) {
      const allowed = (config.commands[button.dataset.command] || []).includes(move.status);
      button.hidden = !allowed;
      button.disabled = !allowed;
    }
    const base = config.apiBase + "/moves/" + encodeURIComponent(move.id) + "/report";
    $("report-md").href = withKey(base + "?format=markdown");
    $("report-json").href = withKey(base);
  }
  function renderTimeline(move) {
    const phases = move.phases || [];
    const starts = phases.map((p) => p.startedAt).filter(Boolean).map((t) => new Date(t).getTime());
    const origin = Math.min(new Date(move.createdAt).getTime(), ...starts);
    const ends = phases.map((p) => p.completedAt || (p.startedAt && p.status === "Running" ? new Date().toISOString() : null))
      .filter(Boolean).map((t) => new Date(t).getTime());
    const span = Math.max(1, Math.max(origin + 1, ...ends) - origin);
    $("timeline").replaceChildren(...phases.filter((p) => p.name !== "discard" || p.startedAt).map((p) => {
      const track = el("div", { class: "track", "aria-hidden": "true" });
      if (p.startedAt) {
        const start = new Date(p.startedAt).getTime();
        const end = p.completedAt ? new Date(p.completedAt).getTime() : (p.status === "Running" ? Date.now() : start);
        const bar = el("div", { class: "bar s-" + p.status });
        bar.style.left = ((start - origin) / span * 100).toFixed(2) + "%";
        bar.style.width = Math.max(0.5, (end - start) / span * 100).toFixed(2) + "%";
        track.append(bar);
      }
      const items = p.items ? p.items.done + "/" + p.items.total + " items" + (p.items.failed ? ", " + p.items.failed + " failed" : "") : "";
      const took = p.startedAt ? duration(p.startedAt, p.completedAt) : "";
      const label = p.name + ": " + p.status + (took ? ", " + took : "") + (items ? ", " + items : "");
      return el("li", { "data-phase": p.name, "data-status": p.status, "aria-label": label },
        el("span", { class: "name", text: p.name }),
        el("span", {}, badge(p.status)),
        track,
        el("span", { class: "meta", text: [took, items, p.attempts > 1 ? p.attempts + " attempts" : ""].filter(Boolean).join(" · ") }));
    }));
  }
  function list(title, entries, render) {
    if (!entries || !entries.length) return [];
    return [el("h4", { text: title + " (" + entries.length + ")" }), el("ul", {}, entries.map((e) => el("li", {}, render(e))))];
  }
  function renderPlan(move) {
    const plan = move.plan || {};
    const issue = (e) => [el("strong", { text: e.code || "" }), " ", e.message || "", e.target ? el("div", { class: "sub mono", text: e.target }) : null];
    const parts = [
      ...list("Blocking", plan.blocking, issue),
      ...list("Warnings", plan.warnings, issue),
      ...list("Actions a person must take", plan.actionsRequired, issue),
    ];
    $("plan").className = "plan";
    $("plan").replaceChildren(...(parts.length ? parts : [el("p", { class: "sub", text: move.plan ? "Nothing blocks, nothing to warn about." : "No plan yet (snapshot has not finished)." })]));
  }
  const COLUMNS = {
    roleAssignments: ["roleName", "scope", "privileged"],
    federatedCredentials: ["name", "issuer", "subject"],
    groups: ["displayName", "id"],
    appRoles: ["resourceDisplayName", "appRoleId"],
    attachments: ["id", "type", "location"],
    keyVaultAccessPolicies: ["vault"],
    cosmosRoleAssignments: ["account", "scope"],
    flexibleServerAdmins: ["server", "principalName"],
    appSettings: ["site"],
    sqlServers: ["server", "login"],
  };
  function renderInventory(inventory) {
    const host = $("inventory");
    host.className = "inventory";
    if (!inventory) { host.replaceChildren(el("p", { class: "sub", text: "Known once snapshot has finished." })); return; }
    const parts = [];
    for (const [kind, entries] of Object.entries(inventory)) {
      if (!entries || !entries.length) continue;
      const columns = COLUMNS[kind] || Object.keys(entries[0]).slice(0, 3);
      parts.push(el("h4", { text: kind + " (" + entries.length + ")" }));
      parts.push(el("table", {},
        el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
        el("tbody", {}, entries.map((e) => el("tr", {}, columns.map((c) => el("td", { class: "mono", text: e[c] === undefined || e[c] === null ? "" : String(e[c]) })))))));
    }
    host.replaceChildren(...(parts.length ? parts : [el("p", { class: "sub", text: "The identity has nothing to copy." })]));
  }
  function renderEvents(report) {
    const rows = (report.events || []).map((e) => {
      const data = e.data || {};
      const detail = [data.phase, data.error && data.error.code, data.commitTimeout && "commit policy: " + data.commitTimeout.outcome].filter(Boolean).join(" · ");
      return el("tr", {}, el("td", { text: when(e.time) }), el("td", { text: e.type }), el("td", { text: detail }), el("td", { text: e.sent ? "yes" : "not yet" }));
    });
    $("events").tBodies[0].replaceChildren(...rows);
  }
  function renderError(move) {
    $("error").hidden = !move.error;
    if (move.error) {
      $("error-body").replaceChildren(el("strong", { text: move.error.code }), " ", move.error.message || "",
        el("div", { class: "sub mono", text: "target: " + (move.error.target || "–") }));
    }
  }
  async function showMove(id, quiet) {
    stopPolling();
    $("list-view").hidden = true;
    $("move-view").hidden = false;
    if (!quiet) setState("move-state", "Loading…");
    let move, report;
    try {
      [move, report] = await Promise.all([
        api(config.apiBase + "/moves/" + encodeURIComponent(id) + "?$expand=inventory"),
        api(config.apiBase + "/moves/" + encodeURIComponent(id) + "/report"),
      ]);
    } catch (error) {
      setState("move-state", "Could not load move " + id + ": " + (error.code || "") + " " + error.message);
      timer = setTimeout(() => showMove(id, true), POLL_MS * 2);
      return;
    }
    if (window.location.hash !== "#/moves/" + encodeURIComponent(id)) return;  // navigated away meanwhile
    current = move;
    $("move-title").textContent = "Move " + party(move.source) + " → " + ((move.target && move.target.location) || (move.request || {}).targetRegion || "");
    document.title = move.status + " · " + ((move.source || {}).name || id) + " · Identity Mover";
    renderSummary(move);
    renderActions(move);
    renderError(move);
    renderTimeline(move);
    renderPlan(move);
    renderInventory((move.plan || {}).inventory);
    renderEvents(report);
    const busy = move.status === "Pending" || move.status === "Running";
    setState("move-state", busy ? "Updating every " + POLL_MS / 1000 + " s while the move runs." : "The move is at rest (" + move.status + ").");
    if (busy) timer = setTimeout(() => showMove(id, true), POLL_MS);
  }
  async function runCommand(command) {
    const move = current;
    if (!move) return;
    const dialog = $("confirm");
    $("confirm-title").textContent = command.charAt(0).toUpperCase() + command.slice(1) + " this move?";
    $("confirm-text").textContent = CONFIRM[command](move);
    $("confirm-yes").textContent = command.charAt(0).toUpperCase() + command.slice(1);
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-no").focus();
    await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
    if (dialog.returnValue !== "ok") return;
    setState("move-state", command + " sent…");
    try {
      await api(config.apiBase + "/moves/" + encodeURIComponent(move.id) + "/" + command, { method: "POST" });
    } catch (error) {
      setState("move-state", command + " refused: " + (error.code || "") + " " + error.message);
      return;
    }
    showMove(move.id, true);
  }

  // ---- routing ----------------------------------------------------------------------------
  function route() {
    const match = window.location.hash.match(/^#\/moves\/(.+)$/);
    if (match) showMove(decodeURIComponent(match[1]));
    else if (listPages.length) showList(listPages[listPages.length - 1]);
    else startList();
  }
  for (const status of config.statuses) $("filter-status").append(el("option", { value: status, text: status }));
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); startList(); });
  $("next-page").addEventListener("click", () => { if (nextLink) { listPages.push(nextLink); showList(nextLink); } });
  $("prev-page").addEventListener("click", () => { if (listPages.length > 1) { listPages.pop(); showList(listPages[listPages.length - 1]); } });
  for (const button of document.querySelectorAll("[data-command]")) {
    button.addEventListener("click", () => runCommand(button.dataset.command));
  }
  window.addEventListener("hashchange", route);
  route();
})();
