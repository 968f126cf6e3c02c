#!/usr/bin/env python3
"""glint compatibility: Glance's ``hashing_algorithm`` other than sha512.

glint runs with ``GLINT_HASHING_ALGORITHM=$GLINT_EXPECT_HASH_ALGO``; python-glanceclient
uploads a random image whose size is not a multiple of 4096 (the last block of a direct
write is padded and cut, so this also checks the padding never reaches the data or the
hashes), then:

  * ``os_hash_algo`` is the configured hashlib name, ``os_hash_value`` is what
    ``hashlib.new(name)`` computes over the file, ``checksum`` is its md5;
  * ``images.data()`` with verification on (glanceclient recomputes the digest with
    ``hashlib.new(os_hash_algo)``) returns identical bytes.

Env: GLINT_ENDPOINT, GLINT_SCRATCH, GLINT_EXPECT_HASH_ALGO.
"""

import hashlib
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient'])

import glanceclient  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'hash-algorithms'
SIZE = 3 * cc.MiB + 4097


def main(c):
    endpoint, scratch = cc.env_config()
    algo = os.environ.get('GLINT_EXPECT_HASH_ALGO', '')
    if not algo:
        sys.stderr.write('compat: set GLINT_EXPECT_HASH_ALGO\n')
        sys.exit(2)
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')
    data = os.urandom(SIZE)
    src = os.path.join(scratch, 'hash-src.raw')
    with open(src, 'wb') as f:
        f.write(data)
    image = c.step('images.create', gc.images.create, name=cc.unique_name(SUITE),
                   disk_format='raw', container_format='bare')
    c.on_exit(gc.images.delete, image['id'])
    with open(src, 'rb') as f:
        c.step('images.upload (%d bytes)' % SIZE, gc.images.upload, image['id'], f,
               image_size=SIZE)
    got = gc.images.get(image['id'])
    c.equal((got['status'], got['size']), ('active', SIZE), 'images.get: active, size')
    c.equal(got['os_hash_algo'], algo, 'images.get: os_hash_algo is the configured name')
    c.equal(got['os_hash_value'], hashlib.new(algo, data).hexdigest(),
            'images.get: os_hash_value == hashlib.new(%r, data)' % algo)
    c.equal(got['checksum'], hashlib.md5(data).hexdigest(), 'images.get: checksum == md5')
    body = c.step('images.data (verified with hashlib.new(os_hash_algo))', gc.images.data,
                  image['id'])
    downloaded = b''.join(body)
    c.check(downloaded == data, 'images.data: bytes identical', 'bytes differ')
    os.unlink(src)


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
