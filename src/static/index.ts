export { contentType } from "./content-type.ts";
export { directorySource, embeddedSource, type EmbeddedFile, type FileSource, type FileStat } from "./file-source.ts";
export { cleanPath, staticHandler, type StaticOptions } from "./handler.ts";
