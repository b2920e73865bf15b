/**
 * Helpers of the folder-transfer tests (`put -r`, `get -r`): a snapshot of a tree (content,
 * mtime, permission bits) to compare two sides by, a client run that must succeed and its
 * stdout, and the file and folder entries of a manifest a fake server sends.
 *
 * @module
 */

import { createChecksum } from "../lib/checksum.ts";
import { assertSuccess, ferry, type RunResult, type ServerProcess } from "./harness.ts";

const decoder = new TextDecoder();

/** One line per name under `dir`: path, type, size, mtime (ms), mode, and content checksum. */
export async function snapshot(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string, prefix: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      const name = prefix + entry.name;
      const info = await Deno.lstat(full);
      if (info.isSymlink) continue;
      if (info.isDirectory) {
        lines.push(`${name}/ ${(info.mode! & 0o777).toString(8)}`);
        await walk(full, name + "/");
        continue;
      }
      const checksum = await createChecksum();
      checksum.update(await Deno.readFile(full));
      lines.push(
        `${name} ${info.size} ${info.mtime!.getTime()} ${(info.mode! & 0o7777).toString(8)} ` +
          checksum.digest(),
      );
    }
  };
  await walk(dir, "");
  return lines.sort();
}

export async function ok(server: ServerProcess, args: string[], cwd?: string): Promise<RunResult> {
  const result = await ferry(server, args, { cwd });
  assertSuccess(result, args.join(" "));
  return result;
}

export function out(result: RunResult): string {
  return decoder.decode(result.stdout);
}

export function file(path: string): Record<string, unknown> {
  return { path, type: "file", size: 4, mtime: 0, mode: 0o644 };
}

export function dir(path: string): Record<string, unknown> {
  return { path, type: "dir", size: 0, mtime: 0, mode: 0o755 };
}
