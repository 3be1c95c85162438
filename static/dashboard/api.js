// Requests to the app and their errors in words. Every error is a RequestError whose message
// is the server's own reason (its JSON "detail"), whatever the route.

export class RequestError extends Error {
  constructor(message, status, detail) {
    super(message);
    this.name = "RequestError";
    this.status = status;
    this.detail = detail;
  }
}

// The status the server answers when an upload_id is no longer kept (app.deps.UploadExpired).
const GONE = 410;

/** The server's "detail" in words: its sentence, or FastAPI's list of failed fields, each named
 *  by ``label(field name)``. */
function describe(response, payload, label) {
  const detail = payload && payload.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => {
      const field = (item.loc || []).filter((part) => part !== "body" && part !== "query")
        .join(".");
      return field ? `${label(field)}: ${item.msg}` : item.msg;
    }).join("; ");
  }
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

async function send(url, init, label = (field) => field) {
  const response = await fetch(url, init);
  if (!response.ok) {
    const payload = await response.json().catch(() => null);
    throw new RequestError(describe(response, payload, label), response.status,
      payload && payload.detail);
  }
  return response;
}

/** GET JSON; ``label`` names the fields of a 422 list. */
export async function getJson(url, { signal, label } = {}) {
  return (await send(url, { signal }, label)).json();
}

/** POST a multipart form and parse the JSON answer. */
export async function postForm(url, body, { signal } = {}) {
  return (await send(url, { method: "POST", body, signal })).json();
}

const NDJSON = "application/x-ndjson";

/** POST a multipart form asking for the answer as a stream of lines (NDJSON): each
 *  ``{"progress": {done, total}}`` goes to ``onProgress``; resolves to the ``result`` line's
 *  value, rejects with the ``error`` line's (a RequestError). Aborting ``signal`` closes the
 *  connection, which stops the work on the server. A refusal before the work started is a
 *  plain error answer. */
export async function postStream(url, body, { signal, onProgress }) {
  const response = await send(url, { method: "POST", body, signal, headers: { Accept: NDJSON } });
  if (!(response.headers.get("content-type") || "").startsWith(NDJSON)) return response.json();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.progress) {
        onProgress(message.progress);
      } else if (message.error) {
        throw new RequestError(message.error.detail, message.error.status, message.error.detail);
      } else if ("result" in message) {
        reader.cancel().catch(() => {});
        return message.result;
      }
    }
    if (done) throw new RequestError("the answer ended before its result", response.status);
  }
}

/** POST JSON and take the answer as a file: its bytes and the name the server gives it. */
export async function postForFile(url, json) {
  const response = await send(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(json),
  });
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename="([^"]+)"/.exec(disposition);
  return { blob: await response.blob(), filename: named ? named[1] : url.split("/").pop() };
}

/** POST the loads with ``files`` (by field name: a File, a [Blob, file name] pair, or null)
 *  and ``fields`` (by name: a value, or a list of values for a repeated field): by the id the
 *  server keeps the loads under, else the file itself (also when the server no longer keeps
 *  it). With ``onProgress``, the answer streams (``postStream``). Resolves to the answer, whose
 *  ``upload_id`` is the id to send next time (null: send the file). */
export async function postLoads(url, loads, files, fields, { signal, onProgress } = {}) {
  const request = (source) => {
    const body = new FormData();
    body.append(...source);
    for (const [name, file] of Object.entries(files)) {
      if (Array.isArray(file)) body.append(name, ...file);
      else if (file) body.append(name, file);
    }
    for (const [name, value] of Object.entries(fields)) {
      for (const each of Array.isArray(value) ? value : [value]) body.append(name, each);
    }
    return onProgress ? postStream(url, body, { signal, onProgress })
      : postForm(url, body, { signal });
  };
  if (loads.uploadId !== null) {
    try {
      return await request(["upload_id", loads.uploadId]);
    } catch (error) {
      if (!(error instanceof RequestError && error.status === GONE)) throw error;
    }
  }
  return request(["file", loads.file]);
}
