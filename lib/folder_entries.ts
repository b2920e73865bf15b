/**
 * What a folder's read says of each name, before any lookup: the entry as the system gives it
 * ({@link DiskDirEntry}), the same packed in a few bits to cross between threads ({@link kindsOf}),
 * and the size on disk from which a folder is read as its names come ({@link BIG_FOLDER_BYTES}).
 * Shared by the disk threads' jobs, the sorted runs of a big folder and the listings.
 *
 * @module
 */

/** One entry as the folder's listing gives it (a name may appear twice: see the listing). */
export interface DiskDirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** The bits of {@link kindsOf}: what a folder's read said a name is. */
export const KIND_FILE = 1, KIND_DIR = 2, KIND_LINK = 4;

/** The kind bits of an entry as a folder's read gives it. */
export function kindsOf(entry: DiskDirEntry): number {
  return (entry.isFile ? KIND_FILE : 0) | (entry.isDirectory ? KIND_DIR : 0) |
    (entry.isSymlink ? KIND_LINK : 0);
}

/** The entry `name` as a folder's read gave it, from its {@link kindsOf} bits. */
export function entryOfKinds(name: string, kinds: number): DiskDirEntry {
  return {
    name,
    isFile: (kinds & KIND_FILE) !== 0,
    isDirectory: (kinds & KIND_DIR) !== 0,
    isSymlink: (kinds & KIND_LINK) !== 0,
  };
}

/**
 * A folder at least this many bytes long on disk is read as its entries come: on ext4 or tmpfs,
 * some 40,000 to 50,000 names. A file system that gives folders no telling size (the same few
 * bytes whatever they hold) has its folders read in one call.
 */
export const BIG_FOLDER_BYTES = 1 << 20;
