/**
 * Names Windows cannot hold as they are, which the receiving side of a tree or files transfer
 * refuses, one entry at a time, when it runs on Windows ({@link unfitName}), as the client does a
 * download's local name it made up from the remote one (lib/local_download.ts): device names (`CON`,
 * `aux.txt`), the characters Windows forbids (`:` would write into an alternate data stream of
 * another file), and a trailing dot or space (which Windows drops, so `a.` would overwrite `a`).
 * Every system reads such a name through the rules of lib/remote_name.ts first.
 *
 * @module
 */

import { StoreError } from "./errors.ts";
import { quote } from "./remote_name.ts";
import { testSetting } from "./test_seams.ts";

/** The systems {@link localNameRules} may be told to keep the rules of. */
const SYSTEMS: readonly string[] = ["windows", "linux", "darwin"];

/**
 * The system whose name rules the names this program makes up itself keep (a download named
 * after its remote file): this one's, unless a test asked for another through
 * `FERRY_TEST_NAME_RULES` (lib/test_seams.ts), so that Windows' rules are tested where the tests
 * run.
 *
 * @example
 * ```ts
 * import { localNameRules, unfitName } from "./windows_names.ts";
 *
 * unfitName("aux.txt", localNameRules()); // a reason on Windows, undefined elsewhere
 * ```
 */
export function localNameRules(): typeof Deno.build.os {
  const asked = testSetting("FERRY_TEST_NAME_RULES");
  return asked && SYSTEMS.includes(asked) ? asked as typeof Deno.build.os : Deno.build.os;
}

/**
 * Device names, with or without an extension (`NUL.txt` is `NUL`): `COM0` to `COM9`, `COM¹`-`COM³`,
 * and the same of `LPT` (superscript digits are digits to Windows), as its documentation lists them.
 */
const DEVICE =
  /^(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3])$/i;

/** Characters no Windows name may hold (control characters and `\` never pass checkName). */
const FORBIDDEN = /[<>:"|?*]/;

/**
 * Why Windows cannot hold the one path segment `name` as it is; undefined when it can.
 *
 * @example
 * ```ts
 * import { windowsNameProblem } from "./windows_names.ts";
 *
 * windowsNameProblem("aux.txt"); // 'Windows reserves "aux" for a device'
 * windowsNameProblem("notes.txt"); // undefined
 * ```
 */
export function windowsNameProblem(name: string): string | undefined {
  const forbidden = FORBIDDEN.exec(name);
  if (forbidden) return `Windows does not allow ${quote(forbidden[0])} in a name`;
  if (name.endsWith(".") || name.endsWith(" ")) {
    return "Windows drops a trailing dot or space, so it would be another name";
  }
  // Windows compares the part before the first dot, trailing spaces dropped: `NUL .txt` too.
  const stem = name.split(".")[0].trimEnd();
  if (DEVICE.test(stem)) return `Windows reserves ${quote(stem)} for a device`;
  return undefined;
}

/**
 * Why a receiver running on `os` (default: this one) refuses the entry `path`, in a line that
 * names the part at fault (a report names the entry): on Windows, the first of its segments that
 * Windows cannot hold ({@link windowsNameProblem}); undefined everywhere else, and for a name
 * Windows can hold.
 *
 * @example
 * ```ts
 * import { unfitName } from "./windows_names.ts";
 *
 * unfitName("src/con/x.c", "windows"); // 'Windows reserves "con" for a device'
 * unfitName("src/con/x.c", "linux"); // undefined
 * ```
 */
export function unfitName(
  path: string,
  os: typeof Deno.build.os = Deno.build.os,
): string | undefined {
  if (os !== "windows") return undefined;
  for (const segment of path.split("/")) {
    const why = windowsNameProblem(segment);
    if (why) return why;
  }
  return undefined;
}

/**
 * Refuses, as a bad name, the name `name` a server running on `os` (default: this one) is asked
 * to create by a single operation (`put`, `mkdir`, `mv`'s NEW), when Windows cannot hold it
 * ({@link unfitName}); nothing anywhere else.
 *
 * @example
 * ```ts
 * import { checkFitName } from "./windows_names.ts";
 *
 * checkFitName("notes/aux.txt", "linux"); // fine
 * try {
 *   checkFitName("notes/aux.txt", "windows");
 * } catch (error) {
 *   console.log((error as Error).message); // Refused name "notes/aux.txt": Windows reserves ...
 * }
 * ```
 */
export function checkFitName(name: string, os: typeof Deno.build.os = Deno.build.os): void {
  const why = unfitName(name, os);
  if (why) throw new StoreError("bad_name", `Refused name ${quote(name)}: ${why}`);
}
