#!/usr/bin/env python3
"""glint compatibility: python-glanceclient v2 (the library Nova and Cinder use).

Two client forms:
  * ``glanceclient.Client('2', endpoint=$GLINT_ENDPOINT, token='x')``: the
    plain requests-based HTTPClient; sends ``X-Auth-Token: x``, which noauth
    glint must ignore; uploads a file object with ``Transfer-Encoding: chunked``.
  * ``glanceclient.Client('2', session=<keystoneauth Session with the noauth
    plugin>, endpoint=...)``: the SessionClient form Nova uses.

Flow on an 8 MiB random raw image: create with a client-chosen id and a custom
property, upload (with and without x-openstack-image-size), get, data()
download with checksum verification ON (the client checks os_hash_value, then
checksum), update with a property, remove_props, image_tags.update/delete, list
with filters (name, tag, extra property, status), 204 download of an image
without data, tasks.list and tasks.get (404), delete, get -> HTTPNotFound, second delete -> HTTPNotFound.

Env: GLINT_ENDPOINT (e.g. http://127.0.0.1:9292), GLINT_SCRATCH (scratch dir).
Run: .venv-compat/bin/python loadtest/compat/test_glanceclient.py
"""

import hashlib
import os
import sys
import uuid
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'keystoneauth1'])

import glanceclient  # noqa: E402
from glanceclient import exc as gc_exc  # noqa: E402
from keystoneauth1 import noauth  # noqa: E402
from keystoneauth1 import session as ks_session  # noqa: E402

# glanceclient warns that the positional version is deprecated; it still is
# the documented way to ask for v2 without a /v2 suffix on the endpoint.
warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'glanceclient'
SIZE = 8 * cc.MiB


def download(gc, image_id):
    """data() with verification on; returns (bytes, declared_length)."""
    body = gc.images.data(image_id)  # do_checksum=True is the default
    if body.wrapped is None:
        return None, None
    buf = bytearray()
    for chunk in body:  # the verifying iterator raises IOError on mismatch
        buf += chunk
    return bytes(buf), len(body)


def ids_of(gen):
    return [i['id'] for i in gen]


def expect_not_found(c, what, fn, *args):
    """``fn(*args)`` must raise glanceclient's HTTPNotFound (a 404)."""
    try:
        fn(*args)
    except gc_exc.HTTPNotFound:
        c.ok('%s -> HTTPNotFound (404)' % what)
        return
    except gc_exc.HTTPException as e:
        c.fail(what, 'wanted 404, got HTTP %s: %s' % (getattr(e, 'code', '?'), e))
    except (AttributeError, KeyError, ValueError) as e:
        # glanceclient.exc.from_response: on an error whose Content-Type
        # contains "json" it calls .get('message') on every top-level value
        # of the body, so {"message": "...", "code": 404} crashes it; a
        # missing Content-Type header is a KeyError.
        c.fail(what, 'glanceclient could not parse the error response (%s: %s); '
               'error bodies need a Content-Type, and JSON ones must nest the '
               'message one level down, e.g. {"error": {"message": ..., '
               '"code": 404}}, or be text/plain / text/html' % (type(e).__name__, e))
    c.fail(what, 'no exception: the call succeeded')


def main(c):
    endpoint, scratch = cc.env_config()
    gc = c.step("Client('2', endpoint=%s, token='x')" % endpoint, glanceclient.Client,
                '2', endpoint=endpoint, token='x')

    src = os.path.join(scratch, 'glanceclient-src.raw')
    md5, sha512 = cc.make_random_file(src, SIZE)
    c.ok('made %d-byte random file %s' % (SIZE, src))
    with open(src, 'rb') as f:
        original = f.read()

    name = cc.unique_name(SUITE)
    want_id = str(uuid.uuid4())
    image = c.step('images.create(id=<uuid>, name, raw/bare, compat_prop=one)',
                   gc.images.create, id=want_id, name=name, disk_format='raw',
                   container_format='bare', compat_prop='one')
    c.on_exit(gc.images.delete, want_id)
    c.equal(image['id'], want_id, 'images.create: client-supplied id kept')
    c.equal(image['status'], 'queued', 'images.create: status queued')
    c.equal(image.get('visibility'), 'shared', 'images.create: default visibility shared')
    c.equal(image.get('compat_prop'), 'one', 'images.create: custom property echoed')
    c.check(bool(image.request_ids and image.request_ids[0]),
            'images.create: x-openstack-request-id returned', 'request_ids=%r' % image.request_ids)

    got = c.step('images.get (queued)', gc.images.get, want_id)
    c.equal((got['size'], got['checksum'], got.get('os_hash_value')), (None, None, None),
            'images.get (queued): size/checksum/os_hash_value are null')

    with open(src, 'rb') as f:
        c.step('images.upload(file, image_size=%d) [chunked + x-openstack-image-size]' % SIZE,
               gc.images.upload, want_id, f, image_size=SIZE)

    got = c.step('images.get', gc.images.get, want_id)
    c.equal(got['status'], 'active', 'images.get: status active')
    c.equal(got['size'], SIZE, 'images.get: size')
    c.equal(got['checksum'], md5, 'images.get: checksum == md5(file)')
    c.equal(got['os_hash_algo'], 'sha512', 'images.get: os_hash_algo')
    c.equal(got['os_hash_value'], sha512, 'images.get: os_hash_value == sha512(file)')
    c.check(got.get('virtual_size') in (None, SIZE), 'images.get: virtual_size null or size',
            'virtual_size=%r' % got.get('virtual_size'))
    c.equal(got.get('file'), '/v2/images/%s/file' % want_id, 'images.get: file link')
    c.equal(got.get('schema'), '/v2/schemas/image', 'images.get: schema link')

    data, declared = c.step('images.data (verifies os_hash_value, then checksum)',
                            download, gc, want_id)
    c.equal(declared, SIZE, 'images.data: Content-Length')
    c.check(data == original, 'images.data: bytes identical', 'bytes differ')
    c.equal(hashlib.sha512(data).hexdigest(), sha512, 'images.data: sha512')

    updated = c.step('images.update(foo=bar, compat_prop=two)', gc.images.update,
                     want_id, foo='bar', compat_prop='two')
    c.equal((updated.get('foo'), updated.get('compat_prop')), ('bar', 'two'),
            'images.update: foo=bar, compat_prop=two')
    got = gc.images.get(want_id)
    c.equal((got.get('foo'), got.get('compat_prop'), got['status']), ('bar', 'two', 'active'),
            'images.get after update: properties set, still active')

    ids = c.step('images.list(filters={name})', lambda: ids_of(
        gc.images.list(filters={'name': name})))
    c.equal(ids, [want_id], 'images.list name filter: exactly the image')
    ids = ids_of(gc.images.list(filters={'foo': 'bar', 'name': name}))
    c.equal(ids, [want_id], 'images.list extra-property filter foo=bar')
    ids = ids_of(gc.images.list(filters={'foo': 'nope', 'name': name}))
    c.equal(ids, [], 'images.list extra-property filter foo=nope: empty')
    ids = ids_of(gc.images.list(filters={'status': 'active', 'disk_format': 'raw',
                                         'name': name}))
    c.equal(ids, [want_id], 'images.list status+disk_format filters')
    tag = 'compat-' + name[-12:]
    c.step('image_tags.update(%s)' % tag, gc.image_tags.update, want_id, tag)
    got = gc.images.get(want_id)
    c.check(tag in got['tags'], 'images.get: tag present', 'tags=%r' % got['tags'])
    ids = ids_of(gc.images.list(filters={'tag': [tag]}))
    c.equal(ids, [want_id], 'images.list tag filter')

    # A second image, created with the same tag and no data.
    name2 = cc.unique_name(SUITE)
    empty = c.step('images.create (tags=[tag], no data)', gc.images.create, name=name2,
                   disk_format='raw', container_format='bare', tags=[tag])
    c.on_exit(gc.images.delete, empty['id'])
    c.equal(empty['tags'], [tag], 'images.create: tags kept')
    # GET /file of an image without data must be 204 (the client returns None).
    data, _ = c.step('images.data of a queued image', download, gc, empty['id'])
    c.equal(data, None, 'images.data of a queued image: 204 -> None')

    ids = ids_of(gc.images.list(filters={'tag': [tag]}))
    c.equal(sorted(ids), sorted([want_id, empty['id']]), 'images.list tag filter: both images')
    # page_size=1: limit=1 per request, the client follows "next", which must
    # keep the tag filter and carry a marker.
    ids = c.step('images.list(tag, page_size=1) [follows next links]', lambda: ids_of(
        gc.images.list(filters={'tag': [tag]}, page_size=1)))
    c.equal(sorted(ids), sorted([want_id, empty['id']]),
            'images.list page_size=1: both images, once each, across 2 pages')
    ids = ids_of(gc.images.list(filters={'tag': [tag], 'status': 'queued'}))
    c.equal(ids, [empty['id']], 'images.list tag+status=queued filter')
    ids = ids_of(gc.images.list(filters={'tag': [tag]}, sort_key='name', sort_dir='asc'))
    c.equal(ids, [i for _, i in sorted([(name, want_id), (name2, empty['id'])])],
            'images.list sort_key=name sort_dir=asc')

    c.step('image_tags.delete(%s)' % tag, gc.image_tags.delete, want_id, tag)
    got = gc.images.get(want_id)
    c.check(tag not in got['tags'], 'images.get: tag removed', 'tags=%r' % got['tags'])
    ids = ids_of(gc.images.list(filters={'tag': [tag]}))
    c.equal(ids, [empty['id']], 'images.list tag filter after tag delete')

    updated = c.step('images.update(remove_props=[foo])', gc.images.update, want_id,
                     remove_props=['foo'])
    c.check('foo' not in updated, 'images.update remove_props: foo gone',
            'foo=%r' % updated.get('foo'))

    # The SessionClient form (keystoneauth Session + noauth plugin), as Nova
    # builds it: get, list, verified download.
    sess = ks_session.Session(auth=noauth.NoAuth(endpoint=endpoint))
    gs = c.step('Client(session=<noauth Session>, endpoint=...)', glanceclient.Client,
                '2', session=sess, endpoint=endpoint)
    got = c.step('session client: images.get', gs.images.get, want_id)
    c.equal(got['os_hash_value'], sha512, 'session client: os_hash_value')
    ids = ids_of(gs.images.list(filters={'name': name}))
    c.equal(ids, [want_id], 'session client: images.list name filter')
    data, declared = c.step('session client: images.data (verified)', download, gs, want_id)
    c.check(data == original, 'session client: images.data bytes identical', 'bytes differ')

    # Upload without image_size: chunked body, no x-openstack-image-size.
    small = original[:cc.MiB + 12345]
    small_path = os.path.join(scratch, 'glanceclient-small.raw')
    with open(small_path, 'wb') as f:
        f.write(small)
    with open(small_path, 'rb') as f:
        c.step('images.upload(file) without image_size', gc.images.upload, empty['id'], f)
    got = gc.images.get(empty['id'])
    c.equal((got['status'], got['size'], got['os_hash_value']),
            ('active', len(small), hashlib.sha512(small).hexdigest()),
            'images.get after sizeless upload: active, size, os_hash_value')
    data, _ = c.step('images.data (sizeless upload)', download, gc, empty['id'])
    c.check(data == small, 'images.data (sizeless upload): bytes identical', 'bytes differ')
    c.step('images.delete (second image)', gc.images.delete, empty['id'])

    # the tasks API (admin-only; noauth callers without roles are admin): the list parses
    # (paged by the client's own limit and the next links) and is empty (nothing made a task:
    # only imports do), an unknown task is 404
    tasks = c.step('tasks.list', lambda: list(gc.tasks.list(filters={'status': 'success'})))
    c.equal(tasks, [], 'tasks.list: no task')
    expect_not_found(c, 'tasks.get of an unknown uuid', gc.tasks.get, str(uuid.uuid4()))

    c.step('images.delete', gc.images.delete, want_id)
    expect_not_found(c, 'images.get after delete', gc.images.get, want_id)
    expect_not_found(c, 'images.delete again', gc.images.delete, want_id)
    expect_not_found(c, 'images.data after delete', gc.images.data, want_id)
    expect_not_found(c, 'images.get of an unknown uuid', gc.images.get, str(uuid.uuid4()))
    ids = ids_of(gc.images.list(filters={'name': name}))
    c.equal(ids, [], 'images.list after delete: empty')

    for f in (src, small_path):
        os.unlink(f)


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
