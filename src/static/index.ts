export { contentType } from "./content-type.ts";
export { directorySource, embeddedSource, type EmbeddedFile, type FileSource, type FileStat } from "./file-source.ts";
export { cleanPath, MAX_COMPRESS_SIZE, staticHandler, type StaticOptions } from "./handler.ts";
export { STATIC_VARIANTS, VariantCache } from "./variants.ts";
