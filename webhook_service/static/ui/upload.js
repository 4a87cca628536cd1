// "Upload Files": pick files (a file input, a folder input, drag and drop), then one upload
// session of the API: POST /api/v1/datasets/<id>/uploads → PUT each file (progress from the
// XHR's upload events) → POST /api/v1/uploads/<sid>/commit. Cancel deletes the session; a
// retry asks HEAD which bytes the session already has and sends only the rest.
"use strict";
(() => {
  const form = document.getElementById("upload-form");
  if (!form) {
    return;
  }
  const $ = (id) => document.getElementById(id);
  const cfg = form.dataset;
  const maxBytes = Number(cfg.maxBytes);
  const pointerWarn = Number(cfg.pointerWarn);
  // "Replace <name>" (?replace=): one file, no folder picker or drop zone (a detached
  // element keeps their handlers inert).
  const replaceName = cfg.replace || "";
  const dropZone = $("drop-zone") || document.createElement("div");
  const list = $("file-list");
  const status = $("upload-status");
  const start = $("start-upload");
  const cancel = $("cancel-upload");
  const retry = $("retry-upload");
  const clear = $("clear-files");
  const inputs = [$("pick-files"), $("pick-folder")].filter(Boolean);
  const result = $("upload-result");
  let entries = []; // {file, path, row, bar, note, done}
  let session = null;
  let current = null; // the XHR in flight
  let busy = false;
  let cancelled = false;

  // Decimal units, as the server's pages show sizes (formatting.human_size).
  const human = (n) => {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    if (n === 1) {
      return "1 byte";
    }
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    if (i === 0) {
      return `${n} bytes`;
    }
    return v < 100 ? `${v.toFixed(1)} ${units[i]}` : `${Math.round(v)} ${units[i]}`;
  };

  const sendable = () => entries.filter((e) => !e.refused);

  function refresh() {
    const ok = sendable();
    const refused = entries.length - ok.length;
    const parts = [];
    if (entries.length) {
      parts.push(`${ok.length} file${ok.length === 1 ? "" : "s"} (${human(ok.reduce((s, e) => s + e.file.size, 0))}) to upload`);
    }
    if (refused) {
      parts.push(`${refused} refused: larger than ${human(maxBytes)}`);
    }
    $("selection-summary").textContent = parts.join("; ");
    const layout = form.querySelector("input[name=layout]:checked").value;
    const warn = layout === "files" && !cfg.tracked && ok.length > pointerWarn;
    $("threshold-warning").hidden = !warn;
    start.disabled = busy || ok.length === 0 || (warn && !$("confirm-many").checked);
    clear.hidden = busy || entries.length === 0;
    $("new-branch").disabled = busy || !$("branch-new").checked;
  }

  function add(file, path) {
    const clean = path.replace(/^\/+/, "");
    if (entries.some((e) => e.path === clean)) {
      return;
    }
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = clean;
    const size = document.createElement("span");
    size.className = "size";
    size.textContent = human(file.size);
    const bar = document.createElement("progress");
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    bar.setAttribute("aria-label", `Progress of ${clean}`);
    const note = document.createElement("span");
    note.className = "note";
    const entry = { file, path: clean, row, bar, note, done: false, refused: file.size > maxBytes };
    if (entry.refused) {
      row.classList.add("refused");
      note.textContent = `too large: at most ${human(maxBytes)}; not sent`;
      bar.hidden = true;
    } else {
      note.textContent = "waiting";
    }
    row.append(name, size, bar, note);
    list.append(row);
    entries.push(entry);
  }

  function picked(input) {
    if (replaceName) {
      // Exactly one file, uploaded under the replaced file's name into its folder.
      entries = [];
      list.replaceChildren();
      if (input.files.length) {
        add(input.files[0], replaceName);
      }
      input.value = "";
      refresh();
      return;
    }
    const files = [...input.files].map((file) => [file, file.webkitRelativePath || file.name]);
    files.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    for (const [file, path] of files) {
      add(file, path);
    }
    input.value = "";
    refresh();
  }
  for (const input of inputs) {
    input.addEventListener("change", () => picked(input));
  }
  clear.addEventListener("click", () => {
    entries = [];
    list.replaceChildren();
    session = null;
    retry.hidden = true;
    status.textContent = "";
    refresh();
  });
  form.addEventListener("change", (event) => {
    if (!inputs.includes(event.target)) {
      refresh();
    }
  });

  // Drag and drop: files, and folders walked through the entries API.
  const readAll = (reader) =>
    new Promise((resolve, reject) => {
      const found = [];
      const next = () =>
        reader.readEntries((batch) => {
          if (!batch.length) {
            resolve(found);
          } else {
            found.push(...batch);
            next();
          }
        }, reject);
      next();
    });
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      add(file, prefix + file.name);
    } else if (entry.isDirectory) {
      for (const child of await readAll(entry.createReader())) {
        await walk(child, `${prefix}${entry.name}/`);
      }
    }
  }
  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      if (!busy) {
        dropZone.classList.add("over");
      }
      event.dataTransfer.dropEffect = busy ? "none" : "copy";
    });
  }
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
  dropZone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropZone.classList.remove("over");
    if (busy) {
      return;
    }
    const items = [...(event.dataTransfer.items || [])];
    const roots = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    if (roots.length && roots.every(Boolean)) {
      for (const root of roots) {
        await walk(root, "");
      }
    } else {
      for (const file of event.dataTransfer.files) {
        add(file, file.name);
      }
    }
    refresh();
  });

  function setBusy(value) {
    busy = value;
    for (const input of inputs) {
      input.disabled = value;
    }
    dropZone.classList.toggle("disabled", value);
    dropZone.setAttribute("aria-disabled", String(value));
    for (const control of form.querySelectorAll("fieldset.layout input, fieldset.branch input, #commit-message")) {
      if (control.dataset.locked === undefined) {
        control.dataset.locked = control.disabled ? "1" : "0";
      }
      control.disabled = value || control.dataset.locked === "1";
    }
    cancel.hidden = !value;
    refresh();
  }

  class Failure extends Error {}

  function request(method, url, { body, type, onProgress, range } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      current = xhr;
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRF-Token", cfg.csrf);
      if (type) {
        xhr.setRequestHeader("Content-Type", type);
      }
      if (range) {
        xhr.setRequestHeader("Content-Range", range);
      }
      if (onProgress) {
        xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded));
      }
      xhr.addEventListener("load", () => {
        current = null;
        let data = null;
        try {
          data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
        } catch (error) {
          data = null;
        }
        resolve({ status: xhr.status, data, xhr });
      });
      const failed = (why) => () => {
        current = null;
        reject(new Failure(why));
      };
      xhr.addEventListener("error", failed("the connection failed"));
      xhr.addEventListener("abort", failed("cancelled"));
      xhr.addEventListener("timeout", failed("the server did not answer in time"));
      xhr.send(body === undefined ? null : body);
    });
  }

  const message = (answer, fallback) =>
    (answer.data && answer.data.error && answer.data.error.message) || `${fallback} (HTTP ${answer.status})`;
  const quote = (path) => path.split("/").map(encodeURIComponent).join("/");

  async function openSession() {
    const newBranch = $("branch-new").checked;
    const body = {
      folder: cfg.folder,
      branch: $("target-branch").value,
      layout: form.querySelector("input[name=layout]:checked").value,
    };
    if (newBranch) {
      body.new_branch = $("new-branch").value.trim();
      body.merge_request = true;
    }
    const answer = await request("POST", `/api/v1/datasets/${cfg.projectId}/uploads`, {
      body: JSON.stringify(body),
      type: "application/json",
    });
    if (answer.status !== 201) {
      throw new Failure(message(answer, "could not open the upload session"));
    }
    return answer.data.id;
  }

  // How many bytes of `entry` the session already holds (0 when none).
  async function received(entry) {
    const answer = await request("HEAD", `/api/v1/uploads/${session}/files/${quote(entry.path)}`);
    if (answer.status === 404) {
      return 0;
    }
    if (answer.status !== 200) {
      throw new Failure(`could not ask what the session holds (HTTP ${answer.status})`);
    }
    return Number(answer.xhr.getResponseHeader("X-Dshub-Received") || 0);
  }

  async function send(entry, resuming) {
    const size = entry.file.size;
    let offset = resuming ? await received(entry) : 0;
    if (resuming && offset === size && size > 0) {
      entry.done = true;
      entry.bar.value = entry.bar.max;
      entry.note.textContent = "already uploaded";
      return;
    }
    if (offset > size) {
      offset = 0;
    }
    entry.note.textContent = "uploading";
    entry.row.classList.add("active");
    const options = {
      body: entry.file.slice(offset),
      type: "application/octet-stream",
      onProgress: (loaded) => {
        entry.bar.value = offset + loaded;
        entry.note.textContent = `${Math.floor(((offset + loaded) / Math.max(size, 1)) * 100)}%`;
      },
    };
    if (offset > 0) {
      options.range = `bytes ${offset}-${size - 1}/${size}`;
    }
    const answer = await request("PUT", `/api/v1/uploads/${session}/files/${quote(entry.path)}`, options);
    entry.row.classList.remove("active");
    if (answer.status !== 200 || !answer.data || answer.data.complete === false) {
      entry.note.textContent = "failed";
      throw new Failure(`${entry.path}: ${message(answer, "the upload failed")}`);
    }
    entry.done = true;
    entry.bar.value = entry.bar.max;
    entry.note.textContent = "uploaded";
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function showResult(data) {
    result.replaceChildren();
    const heading = document.createElement("h3");
    heading.textContent = data.unchanged ? "Nothing changed" : "Uploaded";
    result.append(heading);
    const facts = document.createElement("p");
    if (data.commit) {
      facts.append("Commit ");
      const sha = data.commit.slice(0, 8);
      facts.append(cfg.commitBase ? link(`${cfg.commitBase}/-/commit/${data.commit}`, sha) : sha);
      facts.append(` on branch ${data.branch}.`);
    } else {
      facts.append("The files were already there with the same bytes.");
    }
    result.append(facts);
    if (data.merge_request && data.merge_request.web_url) {
      const mr = document.createElement("p");
      mr.append(link(data.merge_request.web_url, `Merge request !${data.merge_request.iid}`), " is open for review.");
      result.append(mr);
    }
    const files = document.createElement("ul");
    files.className = "uploaded";
    const ref = encodeURIComponent(data.branch || "");
    for (const file of data.files || []) {
      const li = document.createElement("li");
      li.append(link(`${cfg.datasetUrl}/-/blob/${quote(file.path)}?ref=${ref}`, file.path));
      files.append(li);
    }
    result.append(files);
    const tree = cfg.folder ? `${cfg.datasetUrl}/-/tree/${quote(cfg.folder)}` : cfg.datasetUrl;
    const see = document.createElement("p");
    see.append(link(`${tree}?ref=${ref}`, "See the files in the folder"));
    result.append(see);
    result.hidden = false;
    result.focus();
  }

  async function run(resuming) {
    cancelled = false;
    retry.hidden = true;
    result.hidden = true;
    setBusy(true);
    try {
      if (!session) {
        status.textContent = "Opening an upload session…";
        session = await openSession();
        resuming = false;
      }
      // A retry asks the session (HEAD) about every file, done or not: what it holds whole
      // is skipped, what it holds in part resumes at the acknowledged offset.
      const todo = sendable().filter((e) => resuming || !e.done);
      let count = sendable().length - todo.length;
      for (const entry of todo) {
        status.textContent = `Uploading ${count + 1} of ${sendable().length}: ${entry.path}`;
        await send(entry, resuming);
        count += 1;
      }
      status.textContent = "Committing…";
      const commit = await request("POST", `/api/v1/uploads/${session}/commit`, {
        body: JSON.stringify({
          message: $("commit-message").value.trim() || (replaceName && $("commit-message").placeholder) || undefined,
          confirm: $("confirm-many").checked || undefined,
        }),
        type: "application/json",
      });
      if (commit.status !== 200 && commit.status !== 201) {
        throw new Failure(message(commit, "the commit failed"));
      }
      session = null;
      status.textContent = `Uploaded ${sendable().length} file${sendable().length === 1 ? "" : "s"}.`;
      setBusy(false);
      start.disabled = true;
      clear.hidden = false;
      $("selection-summary").textContent = "These files are committed; clear the list to upload more.";
      showResult(commit.data);
    } catch (error) {
      setBusy(false);
      if (cancelled) {
        return;
      }
      const why = error instanceof Failure ? error.message : String(error);
      status.textContent = `The upload stopped: ${why}. ${session ? "Retry sends only what is missing." : ""}`;
      retry.hidden = !session;
      start.disabled = Boolean(session) || start.disabled;
      if (session) {
        retry.focus();
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!busy && !start.disabled) {
      run(false);
    }
  });
  retry.addEventListener("click", () => {
    if (!busy) {
      run(true);
    }
  });
  cancel.addEventListener("click", async () => {
    cancelled = true;
    if (current) {
      current.abort();
    }
    const abandoned = session;
    session = null;
    for (const entry of entries) {
      entry.done = false;
      entry.bar.value = 0;
      if (!entry.refused) {
        entry.note.textContent = "waiting";
      }
    }
    setBusy(false);
    retry.hidden = true;
    if (abandoned) {
      try {
        await request("DELETE", `/api/v1/uploads/${abandoned}`, { type: "application/json" });
      } catch (error) {
        // the session expires on its own
      }
    }
    status.textContent = "Cancelled: nothing was committed.";
    start.focus();
  });
  refresh();
})();
