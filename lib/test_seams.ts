/**
 * Test-only settings the programs read from their environment (docs/testing.md): each only where
 * the program was given the permission to read that variable (by name, or `--allow-env` or `-A`
 * whole, which none of ferry's tasks and binaries give), and never by a prompt. What each one does is the reading module's: `FERRY_TEST_FOLDER_RUN`
 * (lib/name_runs.ts), `FERRY_TEST_NAME_RULES` (lib/windows_names.ts), `FERRY_TEST_DISK_THREAD_DIES`
 * (lib/folder_records.ts), `FERRY_TEST_SLOW_DISK` (lib/slow_disk.ts), `FERRY_TEST_REMOVED_AT_MOST`
 * (lib/tree_work.ts).
 *
 * @module
 */

/**
 * The value of the environment variable `variable` when this program may read it without a
 * prompt; undefined otherwise (the usual case), or when it is unset or empty. Asked once a
 * variable: neither the permission nor the environment changes while the program runs, and some
 * are asked on every file.
 *
 * @example
 * ```ts
 * import { testSetting } from "./test_seams.ts";
 *
 * const run = Number(testSetting("FERRY_TEST_FOLDER_RUN") ?? 0); // 0: no test asked
 * ```
 */
export function testSetting(variable: string): string | undefined {
  if (asked.has(variable)) return asked.get(variable);
  let value: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable }).state === "granted") {
      value = Deno.env.get(variable) || undefined;
    }
  } catch {
    value = undefined;
  }
  asked.set(variable, value);
  return value;
}

/** What {@link testSetting} found, by variable. */
const asked = new Map<string, string | undefined>();
