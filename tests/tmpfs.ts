/**
 * A small disk for tests of what happens when one fills up: a tmpfs mounted at test time on an
 * empty folder, and unmounted afterwards. Mounting needs root (CAP_SYS_ADMIN), which most CI
 * containers have but not all; tests that need it are skipped where {@link MOUNT_ALLOWED} is
 * false.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runCommand } from "./harness.ts";

async function command(name: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const output = await runCommand(name, args);
    return { ok: output.code === 0, text: output.stderr.trim() };
  } catch (error) {
    return { ok: false, text: String(error) };
  }
}

/** Whether this process may mount a tmpfs (root in most CI containers, but not all). */
async function canMountTmpfs(): Promise<boolean> {
  const dir = await Deno.makeTempDir({ prefix: "ferry_mount_probe_" });
  try {
    const mounted = await command("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
    if (!mounted.ok) return false;
    await command("umount", [dir]);
    return true;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Whether tests may mount a tmpfs here; pass `ignore: !MOUNT_ALLOWED` to those that do. */
export const MOUNT_ALLOWED: boolean = await canMountTmpfs();

/**
 * Makes the folder `dir` (which must not exist), mounts a tmpfs on it with mount `options`
 * (`size=8m`, `ro,size=1m`), runs `fn`, then unmounts it.
 *
 * @example
 * ```ts
 * await withTmpfs(`${base}/disk`, "size=8m", async () => {
 *   // an 8 MiB disk at `${base}/disk`
 * });
 * ```
 */
export async function withTmpfs(
  dir: string,
  options: string,
  fn: () => Promise<void>,
): Promise<void> {
  await Deno.mkdir(dir);
  const mounted = await command("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  assert.ok(mounted.ok, `mount failed: ${mounted.text}`);
  try {
    await fn();
  } finally {
    const unmounted = await command("umount", [dir]);
    assert.ok(unmounted.ok, `umount failed: ${unmounted.text}`);
  }
}
