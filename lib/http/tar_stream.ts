/**
 * A folder as one tar archive, streamed: ustar headers written here, with a PAX extended header
 * for what ustar cannot hold (names over 100 bytes or not ASCII, sizes of 8 GiB and more). Every
 * folder has an entry of its own, so empty ones arrive too. Files are read one at a time as the
 * client takes the bytes, so memory stays at one chunk whatever the folder holds. Files are opened
 * through the store (lib/file_store.ts), so the archive follows the same rules as a download.
 *
 * @module
 */

import { StoreError } from "../errors.ts";
import type { FileStore } from "../file_store.ts";
import type { CheckedFile } from "../checked_open.ts";
import { isValidName } from "../remote_name.ts";
import type { TreeEntry } from "../tree_protocol.ts";

const BLOCK = 512;
const encoder = new TextEncoder();

/** Largest size the ustar size field (11 octal digits) holds. */
const USTAR_MAX_SIZE = 0o77777777777;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function writeField(header: Uint8Array, offset: number, width: number, text: string | Uint8Array) {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  header.set(bytes.subarray(0, width), offset);
}

/** A ustar entry type: a regular file, a folder, or a PAX extended header for the next entry. */
type EntryType = "0" | "5" | "x";

/** One 512-byte ustar header. */
function ustarHeader(
  name: Uint8Array,
  size: number,
  mtimeS: number,
  type: EntryType,
): Uint8Array {
  const header = new Uint8Array(BLOCK);
  writeField(header, 0, 100, name);
  writeField(header, 100, 8, octal(type === "5" ? 0o755 : 0o644, 8));
  writeField(header, 108, 8, octal(0, 8));
  writeField(header, 116, 8, octal(0, 8));
  writeField(header, 124, 12, octal(Math.min(size, USTAR_MAX_SIZE), 12));
  writeField(header, 136, 12, octal(Math.max(0, Math.floor(mtimeS)), 12));
  writeField(header, 148, 8, "        ");
  writeField(header, 156, 1, type);
  writeField(header, 257, 6, "ustar\0");
  writeField(header, 263, 2, "00");
  let sum = 0;
  for (const byte of header) sum += byte;
  writeField(header, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return header;
}

/** A PAX record, `LENGTH key=value\n`, the length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLength = encoder.encode(body).length;
  let length = bodyLength + 1;
  while (bodyLength + String(length).length !== length) length = bodyLength + String(length).length;
  return `${length}${body}`;
}

function padding(size: number): Uint8Array {
  return new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);
}

/**
 * The header blocks of one file, or with `folder` of one folder (its `path` then ends in `/`, as
 * tar names folders): a PAX header first when ustar cannot hold its name or size.
 */
export function headerBlocks(
  path: string,
  size: number,
  mtimeMs: number,
  folder = false,
): Uint8Array[] {
  if (folder && !path.endsWith("/")) path += "/";
  const name = encoder.encode(path);
  // deno-lint-ignore no-control-regex
  const ascii = /^[\x00-\x7f]*$/.test(path);
  const blocks: Uint8Array[] = [];
  const mtimeS = mtimeMs / 1000;
  if (name.length > 100 || !ascii || size > USTAR_MAX_SIZE) {
    let records = "";
    if (name.length > 100 || !ascii) records += paxRecord("path", path);
    if (size > USTAR_MAX_SIZE) records += paxRecord("size", String(size));
    records += paxRecord("mtime", mtimeS.toFixed(3));
    const data = encoder.encode(records);
    const short = encoder.encode("PaxHeaders/" + path.replace(/[^\x20-\x7e]/g, "_")).subarray(
      0,
      99,
    );
    blocks.push(ustarHeader(short, data.length, mtimeS, "x"), data, padding(data.length));
  }
  blocks.push(ustarHeader(name.subarray(0, 100), folder ? 0 : size, mtimeS, folder ? "5" : "0"));
  return blocks;
}

/** Options for {@link tarStream}. */
export interface TarStreamOptions {
  /** Told of every body byte sent, for the log. */
  onBytes?: (bytes: number) => void;
  /** Told once the archive ends, or why it stopped, with the files and folders it was given. */
  onEnd?: (result: string, counted: { files: number; folders: number }) => void;
  /** Ends the stream (with an error: the client sees a cut archive) when aborted. */
  signal?: AbortSignal;
}

/**
 * Streams the files and folders `entries` (names relative to the root, each folder before what
 * it holds, as a tree listing has them; taken a batch at a time as the archive needs them, so a
 * listing walked as it goes is never held whole) as a tar archive in which each is named
 * `prefix` + its name less `strip`. A file gone since the listing is left out, and so is a name that no
 * request could carry (a folder's is written as it is, never opened, so it is checked here); a
 * file that shrank while it was read ends the stream with an error (the client sees a cut
 * archive, never a silently wrong one).
 */
export function tarStream(
  store: FileStore,
  entries: AsyncIterable<TreeEntry[]>,
  strip: string,
  prefix: string,
  options: TarStreamOptions = {},
): ReadableStream<Uint8Array> {
  const batches = entries[Symbol.asyncIterator]();
  let batch: TreeEntry[] = [];
  let index = 0;
  const counted = { files: 0, folders: 0 };
  let current: { file: CheckedFile; left: number; size: number } | null = null;
  let finished = false;
  const CHUNK = 1 << 20;
  const end = (result: string) => {
    if (finished) return;
    finished = true;
    try {
      current?.file.close();
    } catch {
      // Already closed.
    }
    // The listing's walk stops here too, whatever the archive's end.
    batches.return?.().catch(() => {});
    options.onEnd?.(result, counted);
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      options.signal?.addEventListener("abort", () => {
        try {
          controller.error(new Error("cut"));
        } catch {
          // Already finished.
        }
        end(`cut (${String(options.signal?.reason ?? "server")})`);
      }, { once: true });
    },
    async pull(controller) {
      try {
        while (!current) {
          if (index >= batch.length) {
            const next = await batches.next();
            if (!next.done) {
              batch = next.value;
              index = 0;
              continue;
            }
            controller.enqueue(new Uint8Array(BLOCK * 2));
            controller.close();
            end("ok");
            return;
          }
          const entry = batch[index++];
          counted[entry.type === "dir" ? "folders" : "files"]++;
          if (entry.type === "dir") {
            if (entry.notUtf8 || (entry.name !== "" && !isValidName(entry.name))) continue;
            const path = prefix + entry.name.slice(strip.length);
            for (const block of headerBlocks(path, 0, entry.mtime, true)) {
              controller.enqueue(block);
              options.onBytes?.(block.length);
            }
            continue;
          }
          let opened;
          try {
            opened = await store.openFile(entry.name);
          } catch (error) {
            if (error instanceof StoreError) continue;
            throw error;
          }
          const path = prefix + entry.name.slice(strip.length);
          for (const block of headerBlocks(path, opened.size, opened.mtime)) {
            controller.enqueue(block);
            options.onBytes?.(block.length);
          }
          current = { file: opened.file, left: opened.size, size: opened.size };
        }
        if (current.left === 0) {
          const pad = padding(current.size);
          controller.enqueue(pad);
          options.onBytes?.(pad.length);
          current.file.close();
          current = null;
          return;
        }
        const buffer = new Uint8Array(Math.min(CHUNK, current.left));
        let filled = 0;
        while (filled < buffer.length) {
          const n = await current.file.read(buffer.subarray(filled));
          if (n === null) throw new Error("a file shrank while it was archived");
          filled += n;
        }
        current.left -= filled;
        controller.enqueue(buffer);
        options.onBytes?.(filled);
      } catch (error) {
        controller.error(error);
        end(`failed (${error instanceof Error ? error.message : String(error)})`);
      }
    },
    cancel() {
      end("interrupted (client went away)");
    },
  }, { highWaterMark: 1 });
}
