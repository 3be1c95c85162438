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
export async function postForm(url, body) {
  return (await send(url, { method: "POST", body })).json();
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

/** POST the loads with the placement in use and ``fields``: by the id the server keeps the file
 *  under, else the file itself (also when the server no longer keeps it). Resolves to the
 *  answer, whose ``upload_id`` is the id to send next time (null: send the file). */
export async function postLoads(url, loads, placement, fields) {
  const request = (source) => {
    const body = new FormData();
    body.append(...source);
    if (placement) body.append("placement", placement);
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    return postForm(url, body);
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
