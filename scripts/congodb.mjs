// congodb.mjs: the stand-in MongoDB of the native stack (layer 8), for machines without one.
//
//   node scripts/congodb.mjs INSTALL_DIR PORT
//
// Debian ships no MongoDB server; CongoDB (inside @push.rocks/smartmongo 2.2.0, installed into
// INSTALL_DIR by `./layers deps`, see scripts/stack.sh mongo-install) speaks MongoDB's wire
// protocol well enough for libmongoc: CRUD, upserts, aggregation, createIndexes as a command.
// Its limits (layer 8's README): unique indexes are not enforced, every find scans every
// document, it knows buildInfo but not buildinfo, no authentication, data in memory only.
// Figures measured on it are not MongoDB's. Stops on SIGTERM/SIGINT.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, portText] = process.argv.slice(2);
const port = Number(portText);
if (!dir || !Number.isInteger(port) || port < 1 || port > 65535) {
    console.error('usage: node congodb.mjs INSTALL_DIR PORT');
    process.exit(2);
}
const entry = join(dir, 'node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js');
const { CongoServer } = await import(pathToFileURL(entry).href);
const server = new CongoServer({ port, host: '127.0.0.1', storage: 'memory' });
await server.start();
console.log(`CongoDB (stand-in MongoDB) on 127.0.0.1:${port}`);
const stop = async () => {
    await server.stop();
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
