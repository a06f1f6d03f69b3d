// Starts an S3 server for tests/integration/test_backup_s3.c: @20minutes/s3rver
// (scripts/bootstrap installs it into .deps/npm), on 127.0.0.1 at a port the
// system picks, with one bucket made, its default credentials S3RVER/S3RVER
// and SigV4 signatures checked. Once it listens, the port goes to PORT_FILE
// (written to a temporary name and renamed, so a reader never sees part).
//   node s3rver.js MODULE_DIR DATA_DIR BUCKET PORT_FILE
'use strict';
const fs = require('fs');
const [moduleDir, directory, bucket, portFile] = process.argv.slice(2);
if (!portFile) {
  console.error('usage: node s3rver.js MODULE_DIR DATA_DIR BUCKET PORT_FILE');
  process.exit(2);
}
const S3rver = require(moduleDir);
new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
})
  .run()
  .then(({ port }) => {
    fs.writeFileSync(portFile + '.tmp', String(port));
    fs.renameSync(portFile + '.tmp', portFile);
  })
  .catch((err) => {
    console.error('s3rver:', err);
    process.exit(1);
  });
