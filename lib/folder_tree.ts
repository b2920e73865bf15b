/**
 * The folder store's two ends of a tree transfer: what `get -r` sends from a folder of the served
 * root ({@link folderSource}) and where `put -r` receives into one ({@link folderSink}), behind
 * lib/file_store.ts's `treeSource` and `treeSink`. Every name goes through the store
 * ({@link checkName}, {@link ServedFolder.folderOf}, {@link ServedFolder.beginUpload}), so a tree
 * can neither leave the root nor reach the private folders, and each file is staged, verified and
 * put in place as a single put is.
 *
 * @module
 */

import { join } from "node:path";
import { StoreError } from "./errors.ts";
import { RESUME_DIR } from "./kept_uploads.ts";
import { checkName, isValidName, nameIn, STAGING_DIR } from "./remote_name.ts";
import { checksumFilePrefix } from "./transfer.ts";
import {
  flushFolder,
  makeDir,
  removeName,
  removeNamesIn,
  resolveFolder,
  type ServedFolder,
} from "./tree_store.ts";
import {
  folderIsFinished,
  sourceFile,
  type TreeFileSink,
  type TreeSink,
  type TreeSource,
  uploadSink,
} from "./tree_transfer.ts";
import type { ManifestEntry } from "./tree_transfer_protocol.ts";
import { foldsCase } from "./case_folding.ts";
import { unfitName } from "./windows_names.ts";
import { entryOf, MODE_BITS, TreeWalker } from "./tree_walk.ts";
import { SwappedError } from "./checked_open.ts";

/**
 * A walk of the folder at `real`, leaving out what no client may see and, unless `keepInvalid`,
 * the names no request can carry. A big folder's names are sorted in runs spilled to the staging
 * folder: hidden from every client, on the root's own filesystem, and emptied when the server
 * starts.
 */
function walkServed(
  store: ServedFolder,
  real: string,
  base: string | undefined,
  options: { keepInvalid?: boolean; lookAhead?: boolean; prune?: (path: string) => boolean } = {},
): Promise<TreeWalker> {
  return TreeWalker.open(real, {
    spillDir: store.stagingDir,
    lookAhead: options.lookAhead,
    prune: options.prune,
    undecodable: options.keepInvalid,
    skip: (path) =>
      (base === undefined && (path === STAGING_DIR || path === RESUME_DIR)) ||
      (!options.keepInvalid && !isValidName(nameIn(base, path))),
  });
}

/** What `get -r` sends from the folder `base` of a folder store (the root when undefined). */
export async function folderSource(
  store: ServedFolder,
  base: string | undefined,
  options: { prune?: (path: string) => boolean } = {},
): Promise<TreeSource> {
  const real = await resolveFolder(store, base);
  const info = await Deno.stat(real);
  return {
    // Names ferry does not carry are walked too: the sender notes them, and the client hears.
    // The sender never goes into an excluded folder: the walk does not read one ahead either.
    walker: await walkServed(store, real, base, { keepInvalid: true, prune: options.prune }),
    top: { mtime: info.mtime?.getTime() ?? 0, mode: (info.mode ?? 0o755) & MODE_BITS },
    // Resolved again and opened as any get: a name swapped for a symlink since the walk cannot
    // lead out, nor one swapped after that resolution (lib/checked_open.ts).
    open: async (path) => sourceFile(await store.openFile(nameIn(base, path))),
    readWhole: (path, _index, max) => store.readWhole(nameIn(base, path), max),
    readLink: (path) => readStoreLink(store, nameIn(base, path)),
    allowed: (path) => isValidName(nameIn(base, path)),
  };
}

/** The target of the symlink `name`, its folders walked as for any name (never out of the root). */
async function readStoreLink(store: ServedFolder, name: string): Promise<string> {
  const folder = await store.folderOf(name);
  if (folder === null) throw new StoreError("not_found", `No such link: ${name}`);
  return await Deno.readLink(join(folder, checkName(name).at(-1)!));
}

/** Receives into the folder `base` of a folder store (the root when undefined). */
export function folderSink(store: ServedFolder, base: string | undefined): TreeSink {
  const name = (path: string) => nameIn(base, path);
  const beginTreeUpload = (path: string, entry: ManifestEntry, resume: boolean) =>
    store.beginUpload(name(path), {
      overwrite: true,
      resume,
      size: entry.size,
      mtime: entry.mtime,
      mode: entry.mode,
      // The receiver has just compared this folder; the name is checked when it is given.
      precheck: false,
      sync: true,
    });
  return {
    // A server on Windows refuses, entry by entry, the names Windows cannot hold.
    ...(Deno.build.os === "windows" ? { unfit: (path: string) => unfitName(name(path)) } : {}),
    check: (path) => void checkName(name(path)),
    walker: async (path) => {
      const at = path ? name(path) : base;
      try {
        // A folder's own walk (a sweep) never goes into the folders it holds.
        const lookAhead = path === undefined;
        return await walkServed(store, await resolveFolder(store, at), at, { lookAhead });
      } catch (error) {
        if (error instanceof StoreError && error.code === "not_found") return null;
        throw error;
      }
    },
    stat: async (path) => {
      const folder = await store.folderOf(name(path)).catch(() => null);
      if (folder === null) return null;
      const info = await Deno.lstat(join(folder, checkName(name(path)).at(-1)!)).catch(() => null);
      return info && entryOf(path, info);
    },
    makeBase: async () => {
      if (base !== undefined) await makeDir(store, base, { parents: true });
    },
    makeDir: (path) => makeDir(store, name(path), { parents: true }),
    remove: (path, options) =>
      removeName(store, name(path), { recursive: true, flush: options?.flush }),
    removeIn: (folder, names, removed) => removeNamesIn(store, name(folder), names, removed),
    beginFile: async (path, entry): Promise<TreeFileSink> =>
      uploadSink(await beginTreeUpload(path, entry, false)),
    // A tree's file is kept and resumed as a single put of its name is (lib/kept_uploads.ts).
    resume: async (path, entry, onProgress) => {
      const upload = await beginTreeUpload(path, entry, true);
      const checksum = upload.offset > 0
        ? await checksumFilePrefix(upload.file, upload.offset, { onProgress }).catch(() => null)
        : null;
      if (!checksum) {
        await upload.discard();
        return null;
      }
      return {
        point: { size: upload.offset, checksum },
        open: () => Promise.resolve(uploadSink(upload)),
        release: async (drop) => {
          if (drop) await upload.discard();
          else await upload.keep().catch(() => upload.discard());
        },
      };
    },
    makeLink: async (path, target) => {
      const folder = (await store.folderOf(name(path), true))!;
      const final = join(folder, checkName(name(path)).at(-1)!);
      const there = await Deno.lstat(final).catch(() => null);
      if (there?.isDirectory) throw new StoreError("not_a_file", `${name(path)} is a folder`);
      // Made in the staging folder, then renamed over whatever file or link has the name.
      const staged = join(store.stagingDir, `${crypto.randomUUID()}.link`);
      await Deno.symlink(target, staged);
      store.forgetFolders();
      try {
        await Deno.rename(staged, final);
      } catch (error) {
        await Deno.remove(staged).catch(() => {});
        throw error;
      }
      await flushFolder(store, folder);
    },
    readLink: (path) => readStoreLink(store, name(path)),
    finishDir: async (path, entry, found) => {
      if (folderIsFinished(entry, found)) return;
      const real = await resolveFolder(store, name(path));
      // The server must still be able to manage what it serves: owner rwx always stays.
      if (Deno.build.os !== "windows") await Deno.chmod(real, entry.mode | 0o700);
      await Deno.utime(real, new Date(), new Date(entry.mtime));
    },
    finishBase: async (top, made) => {
      // The served folder itself belongs to whoever runs the server, not to a client.
      if (base === undefined) return;
      const real = await resolveFolder(store, base);
      if (made) {
        if (Deno.build.os !== "windows") await Deno.chmod(real, top.mode | 0o700);
      } else {
        // The folder that was there: its mode stays; its mtime is set only if it differs.
        const now = (await Deno.stat(real)).mtime?.getTime() ?? NaN;
        if (Math.trunc(now) === Math.trunc(top.mtime)) return;
      }
      await Deno.utime(real, new Date(), new Date(top.mtime));
    },
    // Told by the receiving folder's names; else a probe in the staging folder (nothing a client
    // could see), when it is on the receiving folder's filesystem: a folder mounted inside the
    // root may be another one.
    caseInsensitive: async (ask) => {
      const real = await resolveFolder(store, base).catch(() => store.stagingDir);
      return await foldsCase(real, { probeIn: store.stagingDir, probe: ask?.probe ?? false });
    },
    checksum: async (path, onProgress) => {
      let opened;
      try {
        opened = await store.openFile(name(path));
      } catch (error) {
        // Swapped since the walk (a link, a FIFO): no checksum, so it is received again.
        if (error instanceof SwappedError) return null;
        throw error;
      }
      try {
        return (await checksumFilePrefix(opened.file, opened.size, { onProgress }))?.digest() ??
          null;
      } finally {
        opened.file.close();
      }
    },
  };
}
