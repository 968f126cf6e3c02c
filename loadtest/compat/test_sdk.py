#!/usr/bin/env python3
"""glint compatibility: openstacksdk (``conn.image`` proxy, image v2).

Connection: ``auth_type='none'`` with ``image_endpoint_override`` = the glint
endpoint (keystoneauth then discovers ``/v2/`` from the versions document at
``GET /``). Flow on an 8 MiB random raw image: create_image(data=<file>) (PUT
/file), wait for active, get_image (size/checksum/os_hash_*), download_image in
memory, streamed and to a file (the sdk verifies os_hash_value itself), tags,
update_image with a custom property, images(name=..., tag=...), a second
image via create_image(filename=..., validate_checksum=True), delete,
get_image -> NotFoundException, second delete -> NotFoundException.

Env: GLINT_ENDPOINT (e.g. http://127.0.0.1:9292), GLINT_SCRATCH (scratch dir).
Run: .venv-compat/bin/python loadtest/compat/test_sdk.py
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['openstack'])

import openstack  # noqa: E402
from openstack import exceptions as sdk_exc  # noqa: E402

SUITE = 'sdk'
SIZE = 8 * cc.MiB


def connect(endpoint):
    # auth_type 'none' is keystoneauth's noauth plugin: no Keystone, it sends
    # "X-Auth-Token: notused". image_endpoint_override bypasses the (absent)
    # catalog; discovery still runs GET <endpoint>/ to pick the v2 URL.
    return openstack.connection.Connection(
        auth_type='none',
        image_endpoint_override=endpoint,
        image_api_version='2',
    )


def main(c):
    endpoint, scratch = cc.env_config()
    conn = c.step('connect (auth_type=none, image_endpoint_override=%s)' % endpoint,
                  connect, endpoint)
    img_api = conn.image

    src = os.path.join(scratch, 'sdk-src.raw')
    md5, sha512 = cc.make_random_file(src, SIZE)
    c.ok('made %d-byte random file %s' % (SIZE, src))

    name = cc.unique_name(SUITE)
    with open(src, 'rb') as f:
        # allow_duplicates=False (the default) makes the sdk look the name up
        # first: GET /v2/images/<name> must be a 404, then two list calls.
        image = c.step('create_image(data=<file>, raw/bare) %s' % name,
                       img_api.create_image, name, data=f,
                       disk_format='raw', container_format='bare')
    c.on_exit(img_api.delete_image, image.id)
    c.check(bool(image.id), 'create_image: id %s' % image.id, 'no id')

    image = c.step('wait_for_status(active)', img_api.wait_for_status, image,
                   'active', failures=['killed', 'deleted', 'deactivated'],
                   interval=0.5, wait=120)

    got = c.step('get_image', img_api.get_image, image.id)
    c.equal(got.name, name, 'get_image: name')
    c.equal(got.status, 'active', 'get_image: status')
    c.equal(got.size, SIZE, 'get_image: size')
    c.equal(got.checksum, md5, 'get_image: checksum == md5(file)')
    c.equal(got.hash_algo, 'sha512', 'get_image: os_hash_algo')
    c.equal(got.hash_value, sha512, 'get_image: os_hash_value == sha512(file)')
    c.equal(got.disk_format, 'raw', 'get_image: disk_format')
    c.equal(got.container_format, 'bare', 'get_image: container_format')
    props = got.properties or {}
    # The sdk stamps these on every image it creates (owner_specified.*).
    c.equal(props.get('owner_specified.openstack.object'), 'images/' + name,
            'get_image: sdk property owner_specified.openstack.object kept')

    with open(src, 'rb') as f:
        original = f.read()

    resp = c.step('download_image (in memory, sdk verifies os_hash_value)',
                  img_api.download_image, image)
    c.equal(len(resp.content), SIZE, 'download_image: length')
    c.check(resp.content == original, 'download_image: bytes identical', 'bytes differ')

    resp = c.step('download_image(stream=True)', img_api.download_image, image, stream=True)
    h = hashlib.sha512()
    n = 0
    for chunk in resp.iter_content(chunk_size=cc.MiB):
        h.update(chunk)
        n += len(chunk)
    resp.close()
    c.equal(n, SIZE, 'download_image(stream=True): length')
    c.equal(h.hexdigest(), sha512, 'download_image(stream=True): sha512')
    c.equal(resp.headers.get('Content-MD5'), md5, 'download_image: Content-MD5 header is the hex md5')

    out = os.path.join(scratch, 'sdk-out.raw')
    c.step('download_image(output=path)', img_api.download_image, image, output=out)
    size, got_md5, got_sha = cc.file_hashes(out)
    c.equal((size, got_sha, got_md5), (SIZE, sha512, md5),
            'download_image(output=path): size, sha512, md5')

    updated = c.step('update_image(foo=bar, min_ram=128)', img_api.update_image,
                     image, foo='bar', min_ram=128)
    c.equal((updated.properties or {}).get('foo'), 'bar', 'update_image: response has foo=bar')
    got = img_api.get_image(image.id)
    c.equal((got.properties or {}).get('foo'), 'bar', 'get_image after update: foo=bar')
    c.equal(got.min_ram, 128, 'get_image after update: min_ram')
    c.equal(got.status, 'active', 'get_image after update: still active')

    tag = 'compat-' + name[-12:]
    c.step('add_tag(%s)' % tag, img_api.add_tag, image, tag)
    got = img_api.get_image(image.id)
    c.check(tag in (got.tags or []), 'get_image: tag present', 'tags=%r' % got.tags)

    ids = [i.id for i in img_api.images(name=name)]
    c.equal(ids, [image.id], 'images(name=...): exactly the new image')
    ids = [i.id for i in img_api.images(tag=tag)]
    c.equal(ids, [image.id], 'images(tag=...): exactly the new image')
    ids = [i.id for i in img_api.images()]
    c.check(image.id in ids, 'images(): new image listed', '%s not in %r' % (image.id, ids))
    found = img_api.find_image(name)
    c.equal(getattr(found, 'id', None), image.id, 'find_image(name)')

    c.step('remove_tag', img_api.remove_tag, image, tag)
    got = img_api.get_image(image.id)
    c.check(tag not in (got.tags or []), 'get_image: tag removed', 'tags=%r' % got.tags)

    # Second image: the filename path with validate_checksum=True, which
    # stores md5/sha256 as owner_specified.openstack.* properties and, after
    # the upload, compares the server's checksum with the local md5.
    name2 = cc.unique_name(SUITE)
    sha256 = hashlib.sha256(original).hexdigest()
    image2 = c.step('create_image(filename=..., validate_checksum=True) %s' % name2,
                    img_api.create_image, name2, filename=src, disk_format='raw',
                    container_format='bare', validate_checksum=True,
                    allow_duplicates=True)
    c.on_exit(img_api.delete_image, image2.id)
    got2 = img_api.wait_for_status(img_api.get_image(image2.id), 'active',
                                   failures=['killed'], interval=0.5, wait=120)
    props2 = got2.properties or {}
    c.equal(props2.get('owner_specified.openstack.md5'), md5,
            'create_image(filename): owner_specified.openstack.md5 property')
    c.equal(props2.get('owner_specified.openstack.sha256'), sha256,
            'create_image(filename): owner_specified.openstack.sha256 property')
    c.equal((got2.checksum, got2.hash_value), (md5, sha512),
            'create_image(filename): checksum and os_hash_value')
    c.step('delete_image(second)', img_api.delete_image, image2, ignore_missing=False)

    c.step('delete_image(ignore_missing=False)', img_api.delete_image, image,
           ignore_missing=False)

    try:
        img_api.get_image(image.id)
        c.fail('get_image after delete', 'no exception; image still there')
    except sdk_exc.NotFoundException:
        c.ok('get_image after delete -> NotFoundException')

    try:
        img_api.delete_image(image.id, ignore_missing=False)
        c.fail('delete_image again', 'no exception; second delete succeeded')
    except sdk_exc.NotFoundException:
        c.ok('delete_image again -> NotFoundException')

    c.equal(img_api.find_image(name), None, 'find_image(name) after delete -> None')
    ids = [i.id for i in img_api.images(name=name)]
    c.equal(ids, [], 'images(name=...) after delete: empty')

    for f in (src, out):
        os.unlink(f)


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
