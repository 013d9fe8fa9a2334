// The operator dashboard's script: draws the charts (uPlot, shipped in this package), polls the recent
// activity, and sends promote and rollback requests to the admin API with the key the operator types in.
// Every value shown is set as text (textContent), never parsed as HTML: names and reasons are untrusted.
(function () {
  "use strict";

  const root = document.getElementById("policy");
  if (!root) return;
  const policy = root.dataset.policy;
  const base = "/v1/policies/" + encodeURIComponent(policy);
  const COLOURS = ["#1f5fbf", "#7a7a7a", "#d9822b", "#2a9d55", "#8e44ad", "#c0392b"];

  function width(el) {
    return Math.max(320, Math.min(el.clientWidth || 900, 1100));
  }

  function text(el, value) {
    el.textContent = value;
    return el;
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits);
  }

  // S and its four dimensions over the stored gate evaluations.
  const gateData = document.getElementById("gate-series");
  const gateChart = document.getElementById("gate-chart");
  if (gateData && gateChart) {
    const series = JSON.parse(gateData.textContent);
    const names = ["S", "S_proxy", "completeness", "freshness", "reliability", "representativeness"];
    const thresholds = ["sufficient", "degraded"];
    const opts = {
      width: width(gateChart),
      height: 280,
      scales: { y: { range: [0, 1] } },
      series: [{}].concat(names.map((name, i) => ({
        label: name, stroke: COLOURS[i], width: name === "S" ? 3 : 1.5, dash: name === "S_proxy" ? [6, 4] : undefined,
        points: { show: true, size: name === "S" ? 6 : 4 },
      })), thresholds.map((name) => ({
        label: name + " from", stroke: "#bbb", width: 1, dash: [2, 4], points: { show: false },
      }))),
      axes: [{}, { label: "score" }],
    };
    new uPlot(opts, [series.t].concat(names.map((n) => series[n]), thresholds.map((n) => series[n])), gateChart);
  }

  // Recent activity: rates, action mix and exploration share, refreshed while the page is open.
  const activityChart = document.getElementById("activity-chart");
  let activityPlot = null;

  function showActivity(a) {
    text(document.getElementById("decision-rate"), fixed(a.decisions_per_minute, 1));
    text(document.getElementById("reward-rate"), fixed(a.rewards_per_minute, 1));
    text(document.getElementById("exploration-share"),
      a.exploration_share === null ? "n/a" : (100 * a.exploration_share).toFixed(1) + " %");
    text(document.getElementById("decisions-read"), String(a.decisions));

    const mix = document.querySelector("#action-mix tbody");
    mix.replaceChildren();
    for (const [action, count] of Object.entries(a.actions)) {
      const row = mix.insertRow();
      text(row.insertCell(), action);
      const bar = document.createElement("meter");
      bar.min = 0; bar.max = a.decisions; bar.value = count;
      row.insertCell().appendChild(bar);
      text(row.insertCell(), count + " (" + (100 * count / a.decisions).toFixed(1) + " %)");
    }
    if (!a.decisions) text(mix.insertRow().insertCell(), "no decisions yet");

    const kinds = document.querySelector("#reward-kinds tbody");
    kinds.replaceChildren();
    for (const r of a.rewards) {
      const row = kinds.insertRow();
      text(row.insertCell(), r.kind);
      text(row.insertCell(), r.count + " labelled (" + (100 * r.count / Math.max(a.decisions, 1)).toFixed(1) + " %)");
      text(row.insertCell(), "mean " + fixed(r.mean, 3));
    }
    if (!a.rewards.length) text(kinds.insertRow().insertCell(), "no rewards received for these decisions");

    const perMinute = a.bucket_seconds > 0 ? 60 / a.bucket_seconds : 0;
    const data = [
      a.timeline.t,
      a.timeline.decisions.map((n) => n * perMinute),
      a.timeline.rewards.map((n) => n * perMinute),
    ];
    if (activityPlot === null) {
      activityPlot = new uPlot({
        width: width(activityChart),
        height: 220,
        series: [{}, { label: "decisions / min", stroke: COLOURS[0], fill: "rgba(31,95,191,0.1)" },
          { label: "rewards / min", stroke: COLOURS[3] }],
        axes: [{}, { label: "per minute" }],
      }, data, activityChart);
    } else {
      activityPlot.setData(data);
    }
  }

  function pollActivity() {
    fetch("/ui/policies/" + encodeURIComponent(policy) + "/activity")
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then(showActivity)
      .catch((err) => text(document.getElementById("decisions-read"), "unavailable (" + err.message + ")"));
  }
  if (activityChart) {
    pollActivity();
    setInterval(pollActivity, 15000);
  }

  // Promote and roll back through the admin API; the key goes with the request and nowhere else.
  const result = document.getElementById("transition-result");

  function report(kind, lines) {
    result.className = kind;
    result.replaceChildren();
    for (const line of lines) {
      const p = document.createElement("p");
      result.appendChild(text(p, line));
    }
  }

  async function transition(path, body) {
    const key = document.getElementById("api-key").value;
    const reason = document.getElementById("reason").value.trim();
    if (!key || !reason) {
      report("refused", ["Type the API key and a reason first."]);
      return;
    }
    const headers = { "Content-Type": "application/json", "X-API-Key": key };
    const actor = document.getElementById("actor").value.trim();
    if (actor) headers["X-Actor"] = actor;
    report("pending", ["Sending…"]);
    let response, answer;
    try {
      response = await fetch(base + path, {
        method: "POST", headers: headers, body: JSON.stringify(Object.assign({ reason: reason }, body)),
        credentials: "omit", cache: "no-store",
      });
      answer = await response.json();
    } catch (err) {
      report("refused", ["The request failed: " + err.message]);
      return;
    }
    if (response.ok) {
      const g = answer.generation;
      text(document.getElementById("deployed-generation"), "generation " + g.number);
      report("done", [
        answer.action + ": generation " + g.number + " is deployed (it replaced generation " + answer.replaced.number + ").",
        "By " + g.promoted_by + ": " + g.promoted_reason,
        "Reload the page to see the new lineage.",
      ]);
      return;
    }
    const lines = ["Refused (" + response.status + "): " + answer.message];
    const gate = answer.detail && answer.detail.gate_report;
    if (gate) {
      if (gate.message) lines.push("The gate: " + gate.message);
      if (gate.level) lines.push("Gate level: " + gate.level + (gate.S !== undefined ? " (S = " + fixed(gate.S, 3) + ")" : ""));
      if (gate.evaluation_id) lines.push("Relied on stored evaluation " + gate.evaluation_id + ".");
      for (const u of gate.unusable || []) lines.push("Not usable: " + u);
    }
    report("refused", lines);
  }

  const promote = document.getElementById("promote");
  promote.addEventListener("click", () => {
    const n = document.getElementById("promote-generation").value;
    transition("/generations/" + encodeURIComponent(n) + "/promote", {});
  });
  document.getElementById("rollback").addEventListener("click", () => {
    const to = document.getElementById("rollback-to").value;
    transition("/rollback", to === "" ? {} : { to: Number(to) });
  });
})();
