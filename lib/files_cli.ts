/**
 * `mput` and `mget` over the pipelined path of trees (lib/tree_client.ts `putFiles`, `getFiles`):
 * every file is checked locally first, then all go over one exchange (mget: one per 1,024
 * names), never a round trip per file. What this path cannot carry is handed back to the
 * per-file path of lib/client_cli.ts: the whole list when the server lacks the `tree` feature,
 * and single files that are not regular files (a pipe, a device) or that share a name with an
 * earlier one (so that the later one meets the earlier one exactly as it would one put after
 * another).
 *
 * @module
 */

import { Session } from "./client.ts";
import type { ClientSession } from "./client_session.ts";
import { RefusedError } from "./errors.ts";
import { type LocalDownload, prepareDownload } from "./local_download.ts";
import { openUpload } from "./local_files.ts";
import { ProgressLine, progressWanted } from "./progress.ts";
import { getFiles, offersTree, putFiles } from "./tree_client.ts";
import type { TreeEvent } from "./tree_transfer.ts";

/** One file of an mput or mget, as the command line gives it. */
export interface FileJob {
  /** put (mput) or get (mget). */
  op: "put" | "get";
  /** Local path. */
  local: string;
  /** Remote name. */
  remote: string;
}

/** What a file that made it reports. */
export interface FileDone {
  /** Bytes. */
  size: number;
  /** Its xxh128 checksum, as verified by the receiver. */
  checksum: string;
  /** Where it came from (put) or went (get), for the message. */
  where: string;
}

/** How {@link runFilesPipelined} reaches the rest of the command line. */
export interface FilesHooks {
  /** The session (connected on first use). */
  session(): Promise<ClientSession>;
  /** Reports job `index` done, `seconds` after the previous report (its share of the stream). */
  done(index: number, report: FileDone, seconds: number): Promise<void>;
  /** Reports job `index` failed; the session stays as it is. */
  failed(index: number, error: unknown): Promise<void>;
  /** Drops the session after a failure that may have left it out of step. */
  reset(): void;
}

/** What {@link runFilesPipelined} options it needs of the command line. */
export interface FilesOptions {
  /** mput: replace existing remote files. */
  overwrite: boolean;
  /** mget: replace existing local files. */
  force: boolean;
  /** mget: flush each download before naming it. */
  fsync: boolean;
  /** Nothing but errors. */
  quiet: boolean;
  /** Show the progress line even when stderr is not a terminal. */
  progress: boolean;
}

/**
 * Runs an mput or mget's files over the pipelined path; resolves with the indexes of the jobs
 * left for the per-file path (in order) and the number that failed here.
 */
export async function runFilesPipelined(
  jobs: FileJob[],
  options: FilesOptions,
  hooks: FilesHooks,
): Promise<{ rest: number[]; failed: number }> {
  let failed = 0;
  /**
   * Reports leave in the command line's order, as one file after another would give them: each
   * waits here for those before it. Jobs left for the per-file path report later, on their own.
   */
  const waiting = new Map<number, () => Promise<void>>();
  let order: number[] = [];
  let next = 0;
  let reporting = Promise.resolve();
  const flush = () => {
    reporting = reporting.then(async () => {
      while (next < order.length && waiting.has(order[next])) {
        const run = waiting.get(order[next])!;
        waiting.delete(order[next++]);
        await run();
      }
    });
  };
  const report = (index: number, emit: () => Promise<void>) => {
    waiting.set(index, emit);
    flush();
  };
  /** Jobs for the pipelined path, by index, with what the local checks found. */
  const ready: { index: number; size: number; download?: LocalDownload }[] = [];
  const rest: number[] = [];
  const seen = new Set<string>();
  // Local checks first, as the per-file path makes them: a doomed file never reaches the server.
  for (const [index, job] of jobs.entries()) {
    try {
      if (job.op === "put") {
        const upload = await openUpload(job.local);
        upload.file.close();
        if (upload.size === null || seen.has(job.remote)) {
          rest.push(index);
          continue;
        }
        seen.add(job.remote);
        ready.push({ index, size: upload.size });
      } else {
        if (seen.has(job.local)) {
          rest.push(index);
          continue;
        }
        const download = await prepareDownload(job.remote, job.local, {
          localGiven: false,
          force: options.force,
          fsync: options.fsync,
        });
        if (download.part === undefined) {
          rest.push(index);
          continue;
        }
        seen.add(job.local);
        ready.push({ index, size: 0, download });
      }
    } catch (error) {
      failed++;
      waiting.set(index, () => hooks.failed(index, error));
    }
  }
  const restSet = new Set(rest);
  order = jobs.map((_, i) => i).filter((i) => !restSet.has(i));
  if (ready.length === 0) {
    flush();
    await reporting;
    return { rest, failed };
  }
  const session = await hooks.session();
  if (!(session instanceof Session) || !offersTree(session)) {
    // A server that predates folders: every file goes the per-file way, as before (the local
    // failures found already are reported in their place among them).
    const all = [...rest, ...ready.map((r) => r.index)].sort((a, b) => a - b);
    const perFile = new Set(all);
    order = order.filter((i) => !perFile.has(i));
    for (const index of order) await waiting.get(index)!();
    return { rest: all, failed };
  }
  const put = jobs[ready[0].index].op === "put";
  const total = put ? ready.reduce((n, r) => n + r.size, 0) : null;
  let done = 0;
  const label = () => `${put ? "mput" : "mget"}: ${done}/${ready.length} files`;
  const progress = new ProgressLine(label(), {
    total,
    enabled: !options.quiet && (options.progress || progressWanted()),
  });
  let last = performance.now();
  /** Jobs of `ready` reported so far (done or failed). */
  const reported = new Set<number>();
  const onEvent = (event: TreeEvent) => {
    if ((event.kind !== "sent" && event.kind !== "failed") || event.index === undefined) return;
    const { index, download } = ready[event.index];
    reported.add(event.index);
    const now = performance.now();
    const seconds = (now - last) / 1000;
    last = now;
    done++;
    progress.retitle(label(), total);
    if (event.kind === "failed") failed++;
    report(
      index,
      event.kind === "sent"
        ? () =>
          hooks.done(index, {
            size: event.size,
            checksum: event.checksum ?? "",
            where: download?.where ?? jobs[index].local,
          }, seconds)
        : () => hooks.failed(index, new RefusedError(event.code ?? "io", event.message)),
    );
  };
  try {
    if (put) {
      await putFiles(
        session,
        ready.map((r) => ({ local: jobs[r.index].local, remote: jobs[r.index].remote })),
        { overwrite: options.overwrite, onEvent, onProgress: (n) => progress.update(n) },
      );
    } else {
      await getFiles(
        session,
        ready.map((r) => jobs[r.index].remote),
        (i, size) => ready[i].download!.open(0, size),
        { onEvent, onProgress: (n) => progress.update(n) },
      );
    }
  } catch (error) {
    // The exchange failed as a whole (refused, or the connection lost): each file it had not
    // reported yet fails with its reason, as each would have one by one. The session may be
    // out of step: the per-file path starts a new one.
    hooks.reset();
    progress.done();
    await reporting;
    for (const [i, { index }] of ready.entries()) {
      if (reported.has(i)) continue;
      failed++;
      report(index, () => hooks.failed(index, error));
    }
  } finally {
    progress.done();
    flush();
    await reporting;
  }
  return { rest, failed };
}
