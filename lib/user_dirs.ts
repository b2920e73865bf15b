/**
 * Where ferry keeps its own files for the user: the client's settings (known servers) in the
 * config folder, the server's TLS key in the state folder. Follows the XDG base directories, with
 * %APPDATA% and %LOCALAPPDATA% on Windows, and never prompts for a permission.
 *
 * @module
 */

import { join } from "node:path";
import { NAME } from "./version.ts";

/** Which of the user's folders: settings the user makes, or state a program makes for itself. */
export type UserDirKind = "config" | "state";

const XDG: Record<UserDirKind, { variable: string; fallback: string[]; windows: string }> = {
  config: { variable: "XDG_CONFIG_HOME", fallback: [".config"], windows: "APPDATA" },
  state: { variable: "XDG_STATE_HOME", fallback: [".local", "state"], windows: "LOCALAPPDATA" },
};

/** An environment variable's value, or undefined when it is unset or not ours to read. */
function env(name: string): string | undefined {
  // query, not request: a program run without --allow-env must not stop to ask.
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  const value = Deno.env.get(name);
  return value === "" ? undefined : value;
}

/**
 * ferry's folder of `kind` for this user (`$XDG_CONFIG_HOME/ferry`, `~/.config/ferry`,
 * `$XDG_STATE_HOME/ferry`, `~/.local/state/ferry`, ...), or null when the environment does not
 * say where home is (or the program may not read it).
 *
 * @example
 * ```ts
 * const dir = userDir("config"); // "/home/ann/.config/ferry"
 * ```
 */
export function userDir(kind: UserDirKind): string | null {
  const { variable, fallback, windows } = XDG[kind];
  const xdg = env(variable);
  if (xdg !== undefined && xdg.startsWith("/")) return join(xdg, NAME);
  if (Deno.build.os === "windows") {
    const base = env(windows);
    return base === undefined ? null : join(base, NAME);
  }
  const home = env("HOME");
  return home === undefined ? null : join(home, ...fallback, NAME);
}

/** The environment variables {@link userDir} reads, for messages that ask for them. */
export function userDirVariables(kind: UserDirKind): string {
  return Deno.build.os === "windows" ? XDG[kind].windows : `${XDG[kind].variable} or HOME`;
}

/**
 * Creates `dir` (and its parents) readable by the owner only, when it is missing. A folder that
 * exists already keeps its mode: it may be the user's own.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await Deno.stat(dir);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await chmodQuietly(dir, 0o700);
}

/** Sets `mode` where the system has Unix modes (the umask may have taken bits away). */
export async function chmodQuietly(path: string, mode: number): Promise<void> {
  if (Deno.build.os === "windows") return;
  await Deno.chmod(path, mode);
}
