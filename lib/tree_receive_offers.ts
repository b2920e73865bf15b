/**
 * `--resume` on the receiving end of a tree transfer (lib/tree_receive.ts): the parts of files an
 * interrupted transfer kept, offered to the sender with the WANT that asks for those files, held
 * until each file's FILE says whether the sender continues after them, and given back (kept again
 * for a later run) when the transfer ends before they are used. At most {@link MAX_OFFERS} are
 * held at once, each holding a file open.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { KEEP_MIN_BYTES } from "./kept_uploads.ts";
import type { ManifestEntry, ResumeOffer } from "./tree_transfer_protocol.ts";
import type { KeptPart, TreeSink } from "./tree_transfer.ts";

/** Most kept parts offered and not yet used: each holds a file open until its FILE comes. */
export const MAX_OFFERS = 16;

/**
 * What {@link ResumeOffers} answers at once where nothing is offered (no `--resume`, a small
 * file): most files of most transfers, which need no promise of their own.
 */
const NOTHING: Promise<undefined> = Promise.resolve(undefined);

/** An offer as a WANT carries it: the offer and the index of the file it is for. */
export interface IndexedOffer extends ResumeOffer {
  /** The file's place in the manifest. */
  index: number;
}

/** Options for {@link ResumeOffers}. */
export interface ResumeOffersOptions {
  /** Offer kept parts at all (`--resume`; default false): without, every file starts over. */
  resume?: boolean;
}

/**
 * The kept parts a receiver offers, by manifest index, until their FILE comes.
 *
 * @example
 * ```ts
 * import { ResumeOffers } from "./tree_receive_offers.ts";
 *
 * const sink = { resume: () => Promise.resolve(null) }; // nothing kept
 * const offers = new ResumeOffers(sink, { resume: true });
 * const entry = { path: "big.iso", type: "file" as const, size: 1 << 30, mtime: 0, mode: 0o644 };
 * console.log(await offers.offer(7, entry)); // undefined: the file is asked for whole
 * console.log(await offers.take(7, 0)); // undefined: it starts from its first byte
 * ```
 */
export class ResumeOffers {
  #sink: Pick<TreeSink, "resume">;
  #resume: boolean;
  #offers = new Map<number, KeptPart>();

  /** `sink` finds what an interrupted transfer kept of a file ({@link TreeSink.resume}). */
  constructor(sink: Pick<TreeSink, "resume">, options: ResumeOffersOptions = {}) {
    this.#sink = sink;
    this.#resume = options.resume ?? false;
  }

  /**
   * What to offer the sender for the wanted file `index`: the part kept of it, if it is big
   * enough to have been kept and fewer than {@link MAX_OFFERS} are held; undefined otherwise.
   */
  offer(
    index: number,
    entry: ManifestEntry,
    onProgress?: (bytes: number) => void,
  ): Promise<IndexedOffer | undefined> {
    if (
      !this.#resume || !this.#sink.resume || entry.size <= KEEP_MIN_BYTES ||
      this.#offers.size >= MAX_OFFERS
    ) return NOTHING;
    return this.#offer(index, entry, onProgress);
  }

  async #offer(
    index: number,
    entry: ManifestEntry,
    onProgress?: (bytes: number) => void,
  ): Promise<IndexedOffer | undefined> {
    const kept = await this.#sink.resume!(entry.path, entry, onProgress);
    if (!kept || kept.point.size >= entry.size) {
      await kept?.release(true);
      return undefined;
    }
    this.#offers.set(index, kept);
    const prefix = (await kept.point.checksum.fork()).digest();
    return { index, offset: kept.point.size, prefix };
  }

  /**
   * The FILE of `index` came, from `offset`: the kept part it continues, or undefined when it
   * starts over (then what was kept of it goes). An offset that was not offered is the sender's
   * fault: a {@link ProtocolError}, and the part is kept again.
   */
  take(index: number, offset: number): Promise<KeptPart | undefined> {
    return this.#offers.size === 0 && offset === 0 ? NOTHING : this.#take(index, offset);
  }

  async #take(index: number, offset: number): Promise<KeptPart | undefined> {
    const kept = this.#offers.get(index);
    this.#offers.delete(index);
    if (offset > 0 && offset !== kept?.point.size) {
      await kept?.release(false);
      throw new ProtocolError("FILE resumed from an offset that was not offered");
    }
    if (kept && offset > 0) return kept;
    await kept?.release(true);
    return undefined;
  }

  /** The transfer ends: the parts offered and never used are kept again for the next run. */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.#offers.values()].map((kept) => kept.release(false)));
  }
}
