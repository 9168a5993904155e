/* MedIQA Edge console: live cards over server-sent events, feedback, status strip, optional sound.
   Plain JavaScript, no libraries, no build step (consoles are offline). Every value from the server is
   inserted as text (textContent), never as markup: series descriptions come from DICOM headers. */
(function () {
  "use strict";

  var meta = function (name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  };
  var csrf = meta("csrf-token");
  var heartbeat = parseFloat(meta("heartbeat")) || 5;
  var page = document.body.getAttribute("data-page");
  var bySeries = new Map(); // series_key -> {id, el}
  var seen = new Set(); // result ids already drawn: none twice
  var lastId = null;
  var source = null;
  var lastContact = Date.now();
  var lost = "";
  var agentReasons = [];
  var status = null;
  var statusAt = 0;
  var serverAhead = 0; // seconds the server's clock is ahead of this one (cards expire on the server's clock)
  var audio = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function when(ts) {
    if (typeof ts !== "number") return "";
    var d = new Date(ts * 1000);
    var today = new Date().toDateString() === d.toDateString();
    return (today ? "" : d.toLocaleDateString() + " ") + d.toLocaleTimeString();
  }

  function age(seconds) {
    if (typeof seconds !== "number") return "none yet";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  /* --- sound: off by default, one click enables a WebAudio beep (no file needed) ------------------- */
  var soundButton = document.getElementById("sound");
  function beep() {
    if (!audio) return;
    var t = audio.currentTime;
    [0, 0.3].forEach(function (offset) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.value = 0.12;
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.18);
    });
  }
  if (soundButton) {
    soundButton.addEventListener("click", function () {
      if (audio) {
        audio.close();
        audio = null;
      } else {
        var Ctx = window.AudioContext || window.webkitAudioContext;
        if (Ctx) {
          audio = new Ctx();
          beep();
        }
      }
      soundButton.textContent = audio ? "Sound on" : "Sound off";
      soundButton.setAttribute("aria-pressed", audio ? "true" : "false");
    });
  }

  /* --- the status strip and the red banner ---------------------------------------------------------- */
  function showBanner() {
    var banner = document.getElementById("banner");
    if (!banner) return;
    var lines = (lost ? [lost] : []).concat(agentReasons);
    banner.textContent = "";
    lines.forEach(function (line) { banner.appendChild(el("p", null, line)); });
    banner.hidden = lines.length === 0;
  }

  function drawStrip() {
    if (!status) return;
    var set = function (id, text) {
      var node = document.getElementById(id);
      if (node) node.textContent = text;
    };
    var drift = (Date.now() - statusAt) / 1000;
    set("s-folder", status.folder || "-");
    set("s-backend", status.backend || (status.in_process ? "none" : "-"));
    set("s-last", age(typeof status.last_file_age_s === "number" ? status.last_file_age_s + drift : null));
    set("s-queue", typeof status.queue === "number" ? status.queue + " files" :
      (status.series_arriving ? status.series_arriving + " series arriving" : "-"));
    set("s-state", status.in_process ? (status.degraded ? "DEGRADED" : "agent ok") :
      "console runs apart from the agent: its health is not visible here");
    var stateNode = document.getElementById("s-state");
    if (stateNode) stateNode.className = status.degraded ? "bad" : "good";
  }

  function onStatus(s) {
    status = s;
    statusAt = Date.now();
    if (typeof s.server_time === "number") serverAhead = s.server_time - statusAt / 1000;
    agentReasons = (s.reasons || []).slice();
    drawStrip();
    showBanner();
  }

  function contact() {
    lastContact = Date.now();
    if (lost) {
      lost = "";
      showBanner();
    }
  }

  function loseContact(text) {
    if (lost !== text) {
      lost = text;
      showBanner();
    }
  }

  setInterval(function () {
    drawStrip();
    dropExpired();
    var silent = (Date.now() - lastContact) / 1000;
    if (silent > heartbeat * 3) {
      loseContact("Lost contact with the agent " + Math.round(silent) + " s ago: reconnecting. " +
        "Nothing is lost: results appear here as soon as the connection is back.");
    }
  }, 1000);

  /* --- cards ---------------------------------------------------------------------------------------- */
  function facts(c) {
    var dl = el("dl", "facts");
    var add = function (label, value) {
      if (value === undefined || value === null || value === "") return;
      var div = el("div");
      div.appendChild(el("dt", null, label));
      div.appendChild(el("dd", null, value));
      dl.appendChild(div);
    };
    add("Series", c.series_number !== null ? "#" + c.series_number : "#?");
    if (c.patient_name) add("Patient", c.patient_name);
    add("Description", c.description || "(no description)");
    add("Modality", c.modality);
    add(c.time_source === "series" ? "Series time" : "Checked at", when(c.time));
    add("Station", c.station);
    add("Score", c.score_text + (c.score !== null ? " (0 bad .. 4 excellent)" : ""));
    add("Threshold", c.threshold_text);
    add("Latency", typeof c.latency_ms === "number" ? Math.round(c.latency_ms) + " ms" : "");
    return dl;
  }

  function answersText(c) {
    return (c.feedback || []).map(function (f) {
      return f.label + (f.initials ? " by " + f.initials : "") + " at " + when(f.created) + (f.note ? ": " + f.note : "");
    });
  }

  function feedbackBox(c, open) {
    var box = el("form", "feedback");
    box.setAttribute("data-result-id", c.id);
    var answers = answersText(c);
    if (answers.length) {
      var list = el("ul", "given");
      answers.forEach(function (a) { list.appendChild(el("li", null, a)); });
      box.appendChild(list);
    }
    var done = c.acknowledged && c.decision !== "ok";
    if (done) return box;
    var fields = el("div", "fb-fields");
    var note = el("input");
    note.name = "note";
    note.placeholder = "note (optional)";
    note.maxLength = 500;
    var initials = el("input");
    initials.name = "initials";
    initials.placeholder = "initials";
    initials.maxLength = 8;
    initials.size = 5;
    var buttons = el("div", "fb-buttons");
    (c.feedback_kinds || []).forEach(function (pair) {
      var b = el("button", "fb fb-" + pair[0], pair[1]);
      b.type = "submit";
      b.value = pair[0];
      b.name = "kind";
      buttons.appendChild(b);
    });
    fields.appendChild(buttons);
    fields.appendChild(note);
    fields.appendChild(initials);
    var error = el("p", "fb-error");
    if (open) {
      box.appendChild(fields);
    } else {
      var det = el("details");
      det.appendChild(el("summary", null, "feedback"));
      det.appendChild(fields);
      box.appendChild(det);
    }
    box.appendChild(error);
    box.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var kind = ev.submitter ? ev.submitter.value : "";
      send(c.id, kind, note.value, initials.value, error);
    });
    return box;
  }

  function send(id, kind, note, initials, errorNode) {
    return fetch("/api/feedback", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({result_id: id, kind: kind, note: note, initials: initials})
    }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    }).then(function (body) {
      if (page === "live" && body.card) onUpdate(body.card);
      else window.location.reload();
    }).catch(function (err) {
      if (errorNode) errorNode.textContent = "Not recorded: " + err.message;
    });
  }

  function thumb(c) {
    var img = el("img", "thumb");
    var tries = 0;
    img.alt = "the worst slice";
    img.addEventListener("error", function () {
      tries += 1;
      if (tries <= 8) {
        setTimeout(function () { img.src = "/thumb/" + c.id + ".png?try=" + tries; }, 1500);
      } else {
        img.replaceWith(el("p", "muted", "no picture of the slice"));
      }
    });
    img.src = "/thumb/" + c.id + ".png";
    var link = el("a", "thumb-link");
    link.href = "/series/" + c.id;
    link.appendChild(img);
    return link;
  }

  function renderCard(c) {
    var answered = c.decision === "retake" && c.acknowledged;
    var card = el("article", "card card-" + c.decision + (answered ? " answered" : ""));
    card.setAttribute("data-id", c.id);
    card.setAttribute("data-series-key", c.series_key);
    var head = el("div", "verdict", c.decision === "ok" ? "\u2713 " + c.headline : c.headline);
    card.appendChild(head);
    if (answered) { // still red and in words, no longer shouting: somebody has dealt with it
      var last = (c.feedback || []).filter(function (f) { return f.kind !== "should_have_alerted"; }).pop();
      card.appendChild(el("span", "answer", last ? "answered: " + last.label + (last.initials ? " by " + last.initials : "")
        : "acknowledged"));
    }
    var why = (c.reasons || []).concat(c.notices || []);
    if (c.decision === "retake") {
      var body = el("div", "alert-body");
      var text = el("div", "alert-text");
      text.appendChild(el("p", "what", "What is wrong: " + (why.join("; ") || "low quality score")));
      if (c.where) text.appendChild(el("p", "where", "Where: " + c.where));
      text.appendChild(facts(c));
      body.appendChild(text);
      body.appendChild(thumb(c));
      card.appendChild(body);
      card.appendChild(feedbackBox(c, true));
    } else {
      if (why.length) card.appendChild(el("p", "what", (c.decision === "ok" ? "" : "Why: ") + why.join("; ")));
      card.appendChild(facts(c));
      card.appendChild(feedbackBox(c, c.decision !== "ok"));
    }
    var more = el("a", "more", "details");
    more.href = "/series/" + c.id;
    card.appendChild(more);
    return card;
  }

  function place(card, id) {
    var list = document.getElementById("cards");
    var empty = document.getElementById("empty");
    if (empty) empty.hidden = true;
    var next = null;
    for (var node = list.firstElementChild; node; node = node.nextElementSibling) {
      if (node.classList.contains("card") && Number(node.getAttribute("data-id")) < id) {
        next = node;
        break;
      }
    }
    list.insertBefore(card, next);
  }

  function onResult(c) {
    if (seen.has(c.id)) return;
    seen.add(c.id);
    var prev = bySeries.get(c.series_key);
    if (prev && prev.id > c.id) return; // an older result of a series already shown
    var card = renderCard(c);
    if (prev) prev.el.remove();
    bySeries.set(c.series_key, {id: c.id, el: card, until: c.live_until});
    place(card, c.id);
    if (c.decision === "retake" && !c.backlog) beep();
  }

  /* A card older than alerts.max_age_h leaves the live view (answered or not); it stays in History. */
  function dropExpired() {
    var now = Date.now() / 1000 + serverAhead;
    bySeries.forEach(function (v, key) {
      if (typeof v.until === "number" && v.until < now) {
        v.el.remove();
        bySeries.delete(key);
      }
    });
    var empty = document.getElementById("empty");
    if (empty && page === "live" && bySeries.size === 0) empty.hidden = false;
  }

  function onUpdate(c) {
    var prev = bySeries.get(c.series_key);
    if (!prev || prev.id !== c.id) return;
    var card = renderCard(c);
    prev.el.replaceWith(card);
    prev.el = card;
  }

  function clearCards() {
    bySeries.forEach(function (v) { v.el.remove(); });
    bySeries.clear();
    seen.clear();
    lastId = null;
  }

  /* --- the event stream (live page) or a status poll (other pages) ----------------------------------- */
  function connect() {
    source = new EventSource("/events" + (lastId !== null ? "?after=" + lastId : ""));
    source.addEventListener("open", contact);
    source.addEventListener("result", function (ev) {
      contact();
      var id = Number(ev.lastEventId);
      if (id && (lastId === null || id > lastId)) lastId = id;
      onResult(JSON.parse(ev.data));
    });
    source.addEventListener("update", function (ev) { contact(); onUpdate(JSON.parse(ev.data)); });
    source.addEventListener("status", function (ev) { contact(); onStatus(JSON.parse(ev.data)); });
    source.addEventListener("reset", function () { clearCards(); });
    source.addEventListener("error", function () {
      loseContact("Lost contact with the agent: reconnecting. Nothing is lost: results appear here as soon as " +
        "the connection is back.");
      if (source.readyState === EventSource.CLOSED) { // the browser gave up: start again where we were
        source.close();
        setTimeout(connect, 2000);
      }
    });
  }

  function poll() {
    fetch("/api/status", {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (s) { contact(); onStatus(s); }).catch(function () {
      loseContact("Lost contact with the agent: retrying.");
    });
  }

  if (page === "live") {
    connect();
  } else {
    poll();
    setInterval(poll, heartbeat * 1000);
    document.querySelectorAll("form.feedback").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var kind = ev.submitter ? ev.submitter.value : "";
        var error = form.querySelector(".fb-error") || form.appendChild(el("p", "fb-error"));
        send(Number(form.getAttribute("data-result-id")), kind, form.elements.note.value,
          form.elements.initials.value, error);
      });
    });
  }
  window.mediqaConsole = {seen: seen, lastId: function () { return lastId; }};
})();
