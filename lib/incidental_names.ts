/**
 * Names that operating systems and tools drop into any folder they show or touch (macOS's
 * `.DS_Store` and AppleDouble `._*` files, Windows' `Thumbs.db` and `desktop.ini`, KDE's
 * `.directory`, a volume's trash and index folders): {@link isIncidentalName}. Two folders that
 * both hold one have nothing in common but having been opened, so `--delete`'s guard
 * (lib/tree_delete_guard.ts before a run, `TreeCompareOptions.guard` in lib/tree_receive_compare.ts
 * during one) never takes such a name for one a destination shares with the tree.
 *
 * @module
 */

import { foldName } from "./case_folding.ts";

/**
 * The names, as the systems write them: Finder (`.DS_Store`, `.localized`, a folder's custom icon
 * `Icon\r`), a Mac volume's `.Trashes`, `.Spotlight-V100`, `.fseventsd`, `.TemporaryItems`,
 * `.DocumentRevisions-V100`, `.VolumeIcon.icns` and `.apdisk`, netatalk's `.AppleDouble`,
 * Explorer (`Thumbs.db`, `ehthumbs.db`, `ehthumbs_vista.db`, `desktop.ini`), a Windows volume's
 * `$RECYCLE.BIN` and `System Volume Information`, and KDE's Dolphin (`.directory`).
 */
const NAMES = [
  ".DS_Store",
  ".localized",
  "Icon\r",
  ".Trashes",
  ".Spotlight-V100",
  ".fseventsd",
  ".TemporaryItems",
  ".DocumentRevisions-V100",
  ".VolumeIcon.icns",
  ".apdisk",
  ".AppleDouble",
  "Thumbs.db",
  "ehthumbs.db",
  "ehthumbs_vista.db",
  "desktop.ini",
  "$RECYCLE.BIN",
  "System Volume Information",
  ".directory",
];

const EXACT = new Set(NAMES);
const FOLDED = new Set(NAMES.map(foldName));

/**
 * Names of a pattern: AppleDouble files (`._photo.jpg`, the resource fork and Finder data of
 * `photo.jpg` on a filesystem without them) and a freedesktop volume's trash (`.Trash-1000`).
 */
const PATTERN = /^(\._.|\.trash-\d+$)/;
const PATTERN_EXACT = /^(\._.|\.Trash-\d+$)/;

/** Options for {@link isIncidentalName}. */
export interface IncidentalNameOptions {
  /**
   * Compare by folded name (lib/case_folding.ts `foldName`), as a filesystem that folds case
   * would, so that `DESKTOP.INI` is one too (default true: more names are incidental, which only
   * makes the guard refuse more). A receiver on a filesystem that keeps case apart passes false.
   */
  foldCase?: boolean;
}

/**
 * Whether the one folder entry `name` is one that systems and tools drop into any folder, so that
 * two folders holding it share nothing for it (see the module's note).
 *
 * @example
 * ```ts
 * import { isIncidentalName } from "./incidental_names.ts";
 *
 * isIncidentalName(".DS_Store"); // true
 * isIncidentalName("._beach.jpg"); // true
 * isIncidentalName("DESKTOP.INI"); // true
 * isIncidentalName("DESKTOP.INI", { foldCase: false }); // false
 * isIncidentalName("beach.jpg"); // false
 * ```
 */
export function isIncidentalName(name: string, options: IncidentalNameOptions = {}): boolean {
  if (options.foldCase ?? true) {
    const folded = foldName(name);
    return FOLDED.has(folded) || PATTERN.test(folded);
  }
  return EXACT.has(name) || PATTERN_EXACT.test(name);
}
