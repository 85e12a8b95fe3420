/** The flags `config check` and `volume check` share (the latter runs the data-volume half of the former). */
export const CHECK_FLAGS = {
  "keep-checking": { type: "boolean", help: "report every problem instead of stopping at the first" },
  "skip-check-passphrase": {
    type: "boolean",
    help: "validate the files only; do not contact the key providers",
  },
} as const;
