// Shared by the browser pages (label, live): the access token from the page's address, sent as a Bearer header
// with every request; JSON in and out; a refused request throws its one-line reason.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const auth = { "Authorization": "Bearer " + token };

async function api(method, path, body) {
  const response = await fetch(path, { method, headers: { ...auth, "Content-Type": "application/json" },
                                       body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// An image as a blob, or null while there is none yet (204).
async function blob(path) {
  const response = await fetch(path, { headers: auth });
  if (!response.ok) throw new Error(response.status + " " + path);
  return response.status === 204 ? null : response.blob();
}
