/**
 * HTTP changes to the served tree, as WebDAV and dufs spell them: `DELETE` removes a file (a
 * folder only with `?recursive`), `MOVE` with a `Destination` header renames or moves, `MKCOL`
 * creates a folder (`?parents` for its missing parents). Each is one call of the store's
 * {@link changeTree} (lib/tree_store.ts), the code behind `ferry rm|mv|mkdir`: the same names,
 * the same refusals, the same read-only rule.
 *
 * @module
 */

import { StoreError } from "../errors.ts";
import { quote } from "../remote_name.ts";
import type { TreeChangeRequest } from "../tree_protocol.ts";
import { changeTree } from "../tree_store.ts";
import { type Call, HttpError, targetOf, wantsJson } from "./handler.ts";
import { hrefOf } from "./listing_page.ts";

/** The methods served here. */
export const TREE_METHODS = ["DELETE", "MOVE", "MKCOL"] as const;

/**
 * The name a `Destination` header names: a path, or a whole URL on this same server (another
 * server is refused: nothing is ever copied across).
 */
function destinationOf(request: Request, url: URL): string {
  const field = request.headers.get("destination");
  if (field === null || field.trim() === "") {
    throw new HttpError(400, "MOVE needs a Destination header: the new path, e.g. /folder/name");
  }
  let to: URL;
  try {
    to = new URL(field.trim(), url);
  } catch {
    throw new HttpError(400, `Bad Destination ${quote(field)}`);
  }
  if (to.origin !== url.origin) {
    throw new HttpError(400, "Destination must be on this server");
  }
  const { name } = targetOf(to.pathname);
  if (name === "") throw new HttpError(400, "Destination cannot be the top folder");
  return name;
}

/** Overwrite as WebDAV's header says it, or `?overwrite`; absent means no (unlike WebDAV). */
function overwriteOf(request: Request, url: URL): boolean {
  const field = request.headers.get("overwrite")?.trim().toUpperCase();
  if (field !== undefined && field !== "T" && field !== "F") {
    throw new HttpError(400, "Overwrite must be T or F");
  }
  return field === "T" || (field === undefined && url.searchParams.has("overwrite"));
}

/** Serves DELETE, MOVE and MKCOL. */
export async function serveTreeChange(call: Call): Promise<Response> {
  const { request, url, target, ctx, exchange } = call;
  const name = target.name;
  exchange.name = name || "/";
  // Nothing in the body is read: say so at once rather than leave it unread.
  await request.body?.cancel().catch(() => {});
  if (name === "") {
    throw new HttpError(403, `Refused: ${request.method} of the top folder`);
  }
  let change: TreeChangeRequest;
  let done: string;
  let status = 200;
  let result = "ok";
  const headers: Record<string, string> = {};
  switch (request.method) {
    case "DELETE":
      change = { op: "rm", name, recursive: url.searchParams.has("recursive") };
      done = `Removed ${quote(name)}`;
      break;
    case "MOVE": {
      const to = destinationOf(request, url);
      change = { op: "mv", name, to, overwrite: overwriteOf(request, url) };
      done = `Moved ${quote(name)} to ${quote(to)}`;
      result = `ok (to ${quote(to)})`;
      status = 201;
      headers.location = hrefOf(to, target.folder);
      break;
    }
    case "MKCOL":
      change = { op: "mkdir", name, parents: url.searchParams.has("parents") };
      done = `Created folder ${quote(name)}`;
      status = 201;
      headers.location = hrefOf(name, true);
      break;
    default:
      throw new HttpError(405, `Method ${request.method} is not allowed`);
  }
  try {
    await changeTree(ctx.store, change, { readOnly: ctx.readOnly });
  } catch (error) {
    throw explained(error, request, change);
  }
  exchange.result = result;
  const body = wantsJson(request, url) ? JSON.stringify({ ok: true, message: done }) : done;
  return new Response(body + "\n", {
    status,
    headers: {
      ...headers,
      "content-type": wantsJson(request, url) ? "application/json" : "text/plain; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}

/** The store's refusal, with the flag or header that would change the answer where there is one. */
function explained(error: unknown, request: Request, change: TreeChangeRequest): unknown {
  if (!(error instanceof StoreError)) return error;
  if (change.op === "rm" && !change.recursive && error.code === "not_a_file") {
    return new StoreError(
      "not_a_file",
      `${error.message}: add ?recursive to remove it with everything in it`,
    );
  }
  if (change.op === "mv" && error.code === "exists") {
    // WebDAV answers 412 when the client said Overwrite: F itself.
    if (request.headers.get("overwrite")?.trim().toUpperCase() === "F") {
      return new HttpError(412, error.message);
    }
    return new StoreError("exists", `${error.message} (send Overwrite: T to replace it)`);
  }
  if (change.op === "mkdir" && !change.parents && error.code === "not_found") {
    return new StoreError("not_found", `${error.message} (add ?parents to create it too)`);
  }
  return error;
}
