/**
 * Remote names: the rules every name that arrives from the network must pass ({@link checkName})
 * before any store resolves it, the names reserved for the server's private folders
 * ({@link STAGING_DIR}; the kept uploads' folder is lib/kept_uploads.ts's) under any case
 * (lib/case_folding.ts), and how a name is
 * shown in a message or a log line ({@link quote}). Shared by the folder store, the S3 store and
 * the tree operations.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { foldName } from "./case_folding.ts";
import { safeJson, utf8Length } from "./format.ts";
import { RESUME_DIR } from "./kept_uploads.ts";
import { BIDI_CONTROL, CONTROL_CHAR } from "./terminal_chars.ts";

/** Hidden folder at the top of the root that holds uploads in progress. */
export const STAGING_DIR = ".ferry-staging";

/** Longest name accepted, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;

/**
 * Checks a remote name and splits it into path segments. Names are relative, `/`-separated paths
 * with no empty, `.` or `..` segment, no NUL, control character (C0, DEL or C1) or bidi control,
 * no backslash, and nothing under the server's private folders. Throws {@link StoreError}
 * `bad_name` with the reason.
 */
export function checkName(name: string): string[] {
  const refuse = (why: string) => new StoreError("bad_name", `Refused name ${quote(name)}: ${why}`);
  if (typeof name !== "string" || name.length === 0) throw refuse("it is empty");
  if (name.includes("\0")) throw refuse("it contains a NUL byte");
  if (CONTROL_CHAR.test(name)) throw refuse("it contains a control character");
  if (BIDI_CONTROL.test(name)) throw refuse("it contains a bidirectional control character");
  if (utf8Length(name) > MAX_NAME_BYTES) {
    throw refuse(`it is longer than ${MAX_NAME_BYTES} bytes`);
  }
  if (name.startsWith("/")) throw refuse("absolute paths are not allowed");
  if (name.includes("\\")) throw refuse("backslashes are not allowed");
  const segments = name.split("/");
  for (const segment of segments) {
    if (segment === "") throw refuse("it has an empty path segment");
    if (segment === "..") throw refuse('".." is not allowed');
    if (segment === ".") throw refuse('"." is not allowed');
    if (utf8Length(segment) > 255) throw refuse("a path segment is over 255 bytes");
  }
  // Under any case: a root on a filesystem that folds case finds the folder by every spelling.
  const first = segments[0].startsWith(".") ? foldName(segments[0]) : "";
  if (first === STAGING_DIR || first === RESUME_DIR) {
    throw refuse("it is reserved for uploads in progress");
  }
  return segments;
}

/**
 * Quotes a name for a message or a log line, escaping anything a terminal would act on as
 * `\uXXXX`, so a name can neither forge nor recolour a line.
 */
export function quote(name: string): string {
  const shown = name.length > 200 ? name.slice(0, 200) + "…" : name;
  return safeJson(shown);
}

/** Whether `name` passes {@link checkName}: for walks that leave out what no request can carry. */
export function isValidName(name: string): boolean {
  try {
    checkName(name);
    return true;
  } catch {
    return false;
  }
}

/** The root-relative name of `path` inside the tree at `base` (undefined: the root). */
export function nameIn(base: string | undefined, path: string): string {
  return base === undefined ? path : `${base}/${path}`;
}
