/** Types of bin/require-node.js (plain JavaScript, so that any Node can parse it). */
export declare const MIN_NODE: string;
export declare function nodeIsRecentEnough(version?: string): boolean;
export declare function requireNode(what?: string): void;
