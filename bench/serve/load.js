// bench/serve's load generator in its own process: autocannon (its CLI reads a body file as UTF-8,
// which would corrupt binary tensor data, hence this wrapper around its API).
//   node bench/serve/load.js <url> <body file> <connections> <seconds> <headers as JSON>
// Prints autocannon's result as JSON.
import fs from 'node:fs';
import autocannon from 'autocannon';

const [url, bodyFile, connections, seconds, headers] = process.argv.slice(2);
const result = await autocannon({
  url,
  method: 'POST',
  headers: JSON.parse(headers),
  body: fs.readFileSync(bodyFile),
  connections: Number(connections),
  duration: Number(seconds),
});
process.stdout.write(JSON.stringify(result));
