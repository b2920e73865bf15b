/**
 * Filesystems that fold case (APFS, NTFS, and folders marked so on Linux): which names such a
 * filesystem takes for one ({@link foldName}), and whether a folder lies on one ({@link foldsCase}).
 * A tree's receiver on such a filesystem refuses two names of one folder that fold alike and
 * sweeps by folded name; the server refuses its private folders under any case.
 *
 * @module
 */

import { join } from "node:path";

/**
 * The key two names share when a filesystem that folds case (APFS, NTFS) may take them for one:
 * composed (NFC, as APFS ignores the form), uppercased (NTFS compares by its uppercase table: `σ`
 * and `ς` are both `Σ`) and lowercased again. Coarser where the filesystems differ (`ß` and `ss`
 * are one here), so two names it tells apart are two names there too; coarser only refuses more.
 *
 * @example
 * ```ts
 * import { foldName } from "./case_folding.ts";
 *
 * foldName("README.md") === foldName("readme.md"); // true
 * foldName("\u03c3") === foldName("\u03c2"); // true
 * ```
 */
export function foldName(name: string): string {
  return name.normalize("NFC").toUpperCase().toLowerCase().normalize("NFC");
}

/** Options for {@link foldsCase}. */
export interface FoldsCaseOptions {
  /**
   * A folder of the caller's own (the server's staging folder) to probe in when nothing `dir`
   * holds tells; used only when it is on `dir`'s filesystem (the same device: a folder mounted
   * inside the tree is another filesystem, which may fold otherwise). None by default.
   */
  probeIn?: string;
  /**
   * Whether a probe file may be written into `dir` itself when nothing else tells (default
   * true); false: the answer is then undefined.
   */
  probe?: boolean;
}

/**
 * Whether the filesystem holding the folder `dir` folds case, so that `A` and `a` name one file.
 * Told without writing where the folder, or a folder in it on the same filesystem, holds a name
 * with an ASCII letter: that name is looked up in the other case (the same file: it folds).
 * Asking so leaves the folder as it was, mtime and change time included: a folder of the user's
 * that a tree lands in is not the tree's to touch. Where no name tells (an empty folder), a probe
 * file is created under a lowercase name and looked for under the uppercase one, in
 * `options.probeIn` if that is on the same filesystem, else in `dir` unless `options.probe` is
 * false; undefined when nothing tells and no probe may be written.
 *
 * @example
 * ```ts
 * import { foldsCase } from "./case_folding.ts";
 *
 * // Reads only: undefined for an empty folder.
 * const folds = await foldsCase(Deno.cwd(), { probe: false });
 * ```
 */
export async function foldsCase(
  dir: string,
  options: FoldsCaseOptions = {},
): Promise<boolean | undefined> {
  const told = await foldsCaseByNames(dir).catch(() => undefined);
  if (told !== undefined) return told;
  if (options.probeIn !== undefined && await sameDevice(dir, options.probeIn)) {
    return await probeCase(options.probeIn);
  }
  return options.probe === false ? undefined : await probeCase(dir);
}

/** Whether two folders are on one filesystem (false when either cannot be looked at). */
async function sameDevice(a: string, b: string): Promise<boolean> {
  try {
    const [one, two] = await Promise.all([Deno.stat(a), Deno.stat(b)]);
    return one.dev === two.dev;
  } catch {
    return false;
  }
}

/** Whether a file created in `dir` under a lowercase name is found under the uppercase one. */
async function probeCase(dir: string): Promise<boolean> {
  const name = `.ferry-case-${crypto.randomUUID()}`;
  const probe = join(dir, name);
  try {
    await Deno.writeFile(probe, new Uint8Array(0), { createNew: true });
  } catch {
    // A folder we cannot write into receives nothing either.
    return false;
  }
  try {
    await Deno.lstat(join(dir, name.toUpperCase()));
    return true;
  } catch {
    return false;
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}

/** Most names {@link foldsCase} looks through for one that tells, before it probes. */
const CASE_LOOKUPS = 64;

/** `name` with the case of each ASCII letter swapped, which every case-folding filesystem folds. */
function swapAsciiCase(name: string): string {
  return name.replace(/[A-Za-z]/g, (c) => c < "a" ? c.toLowerCase() : c.toUpperCase());
}

/** Most folders {@link foldsCase} looks into (`dir` and those in it), before it probes. */
const CASE_FOLDERS = 8;

/**
 * {@link foldsCase} by the names `dir` holds, and those of the folders in it on the same device
 * (a year folder `2024` holds names that tell): one looked up in the other case is the same file
 * (true) or is not there (false); undefined when no name tells (none with an ASCII letter, no
 * inode numbers). Two hard links whose names differ only by case would pass for folding: the side
 * that refuses more.
 */
async function foldsCaseByNames(dir: string): Promise<boolean | undefined> {
  const same = (a: Deno.FileInfo, b: Deno.FileInfo) => a.dev === b.dev && a.ino === b.ino;
  const device = (await Deno.stat(dir)).dev;
  const folders = [dir];
  let looked = 0;
  for (let i = 0; i < folders.length; i++) {
    for await (const entry of Deno.readDir(folders[i])) {
      if (++looked > CASE_LOOKUPS) return undefined;
      const path = join(folders[i], entry.name);
      const other = swapAsciiCase(entry.name);
      const inside = entry.isDirectory && folders.length < CASE_FOLDERS;
      if (other === entry.name && !inside) continue;
      const found = await Deno.lstat(path).catch(() => null);
      if (found?.ino === null || found?.ino === undefined) continue;
      // A folder mounted here is another filesystem: its names tell nothing of this one.
      if (inside && found.isDirectory && found.dev === device) folders.push(path);
      if (other === entry.name) continue;
      let swapped: Deno.FileInfo | null;
      try {
        swapped = await Deno.lstat(join(folders[i], other));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) continue;
        swapped = null;
      }
      if (swapped) return same(found, swapped);
      // Not there in the other case: case-sensitive, unless the name itself went meanwhile.
      const again = await Deno.lstat(path).catch(() => null);
      if (again && same(found, again)) return false;
    }
  }
  return undefined;
}
