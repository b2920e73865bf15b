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

/**
 * Whether the filesystem holding the folder `dir` folds case, so that `A` and `a` name one file.
 * Told without writing where the folder holds a name with an ASCII letter: that name is looked up
 * in the other case (the same file: it folds). Asking so leaves the folder as it was, mtime and
 * change time included: a folder of the user's that a tree lands in is not the tree's to touch.
 * Only a folder holding no such name gets a probe file, created under a lowercase name and looked
 * for under the uppercase one.
 */
export async function foldsCase(dir: string): Promise<boolean> {
  const told = await foldsCaseByNames(dir).catch(() => undefined);
  if (told !== undefined) return told;
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

/**
 * {@link foldsCase} by the names `dir` holds: one looked up in the other case is the same file
 * (true) or is not there (false); undefined when no name tells (none with an ASCII letter, no
 * inode numbers). Two hard links whose names differ only by case would pass for folding: the side
 * that refuses more.
 */
async function foldsCaseByNames(dir: string): Promise<boolean | undefined> {
  const same = (a: Deno.FileInfo, b: Deno.FileInfo) => a.dev === b.dev && a.ino === b.ino;
  let looked = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (++looked > CASE_LOOKUPS) return undefined;
    const other = swapAsciiCase(entry.name);
    if (other === entry.name) continue;
    const found = await Deno.lstat(join(dir, entry.name)).catch(() => null);
    if (found?.ino === null || found?.ino === undefined) continue;
    let swapped: Deno.FileInfo | null;
    try {
      swapped = await Deno.lstat(join(dir, other));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) continue;
      swapped = null;
    }
    if (swapped) return same(found, swapped);
    // Not there in the other case: case-sensitive, unless the name itself went meanwhile.
    const again = await Deno.lstat(join(dir, entry.name)).catch(() => null);
    if (again && same(found, again)) return false;
  }
  return undefined;
}
