#!/usr/bin/env python3
"""glint compatibility: Glance's cache API (``/v2/cache``) through the standard clients.

Against a glint whose only store is remote (S3) with the block cache on: an image is queued
for prefetch with ``glance cache-queue`` and appears in ``glance cache-list`` as cached with its
size; ``cache-delete`` removes it; openstacksdk's ``queue_image``, ``get_image_cache``,
``cached_image_nodes``, ``cache_delete_image``, ``clear_cache``, ``prune_cache`` and
``clean_cache`` work on a second image; ``glance cache-clear`` empties the cache; a downloaded
image is cached and its bytes are right; a non-admin is refused (403).

Env: GLINT_ENDPOINT, GLINT_SCRATCH, GLINT_NODE_URL (the node's worker_self_reference_url).
"""

import hashlib
import os
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'openstack'])

import glanceclient  # noqa: E402
from glanceclient import exc as gc_exc  # noqa: E402
import openstack  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'cache'
SIZE = 3 * cc.MiB + 1234


def glance(endpoint, *args):
    """The ``glance`` command (python-glanceclient's shell), noauth (an admin)."""
    cli = os.path.join(os.path.dirname(sys.executable), 'glance')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    env.update({'OS_IMAGE_URL': endpoint, 'OS_AUTH_TOKEN': 'x', 'OS_IMAGE_API_VERSION': '2'})
    p = subprocess.run([cli, '--os-image-url', endpoint, '--os-auth-token', 'x', *args],
                       env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def wait_cached(list_fn, image_id, what, c, want=True):
    deadline = time.time() + 60
    while time.time() < deadline:
        if (image_id in list_fn()) == want:
            return True
        time.sleep(0.2)
    c.fail(what, 'not within 60 s')
    return False


def main(c):
    endpoint, scratch = cc.env_config()
    node = os.environ['GLINT_NODE_URL']
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')

    def upload():
        path = os.path.join(scratch, 'cache-%d.bin' % time.time_ns())
        cc.make_random_file(path, SIZE)
        img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                               container_format='bare')
        c.on_exit(gc.images.delete, img.id)
        with open(path, 'rb') as f:
            gc.images.upload(img.id, f)
        return img.id, path

    def glance_cached():
        return [i['image_id'] for i in gc.cache.list()['cached_images']]

    # python-glanceclient's shell: queue, list, delete
    first, first_path = upload()
    rc, out = glance(endpoint, 'cache-queue', first)
    c.equal(rc, 0, 'glance cache-queue: ' + out[-500:])
    if wait_cached(glance_cached, first, 'glance cache-queue fills the cache', c):
        c.ok('glance cache-queue: the image is cached')
    rc, out = glance(endpoint, 'cache-list')
    c.check(rc == 0 and first in out and 'cached' in out and str(SIZE) in out,
            'glance cache-list shows it cached with its size', out[-2000:])
    # each data plane reports what its cache holds within a second
    deadline = time.time() + 20
    while list(gc.cache.list_cached_nodes(first)) != [node] and time.time() < deadline:
        time.sleep(0.2)
    c.equal(list(gc.cache.list_cached_nodes(first)), [node],
            'glanceclient list_cached_nodes names this node')
    rc, out = glance(endpoint, 'cache-delete', first)
    c.equal(rc, 0, 'glance cache-delete: ' + out[-500:])
    c.check(first not in glance_cached(), 'glance cache-delete: no longer cached')

    # openstacksdk
    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    second, second_path = upload()
    c.step('sdk queue_image', conn.image.queue_image, second)

    def sdk_cached():
        return [i['image_id'] for i in conn.image.get_image_cache().cached_images]
    if wait_cached(sdk_cached, second, 'sdk queue_image fills the cache', c):
        c.ok('sdk get_image_cache lists the queued image as cached')
    deadline = time.time() + 20
    while list(conn.image.cached_image_nodes(second)) != [node] and time.time() < deadline:
        time.sleep(0.2)
    c.equal(list(conn.image.cached_image_nodes(second)), [node], 'sdk cached_image_nodes')
    pruned = c.step('sdk prune_cache', conn.image.prune_cache)
    c.equal(pruned, {'total_files_pruned': 0, 'total_bytes_pruned': 0},
            'sdk prune_cache: nothing over the budget')
    c.step('sdk clean_cache', conn.image.clean_cache)
    # a download through the cache is whole and right
    got = hashlib.md5(b''.join(gc.images.data(second))).hexdigest()
    c.equal(got, cc.file_hashes(second_path)[1], 'a download through the cache: same md5')
    c.step('sdk cache_delete_image', conn.image.cache_delete_image, second)
    c.check(second not in sdk_cached(), 'sdk cache_delete_image: no longer cached')
    c.step('sdk queue_image again', conn.image.queue_image, second)
    wait_cached(sdk_cached, second, 'sdk queue_image again', c)
    c.step('sdk clear_cache', conn.image.clear_cache, 'cache')
    c.equal(sdk_cached(), [], 'sdk clear_cache: the cache is empty')

    # glance cache-clear, after a download filled the cache
    b''.join(gc.images.data(first))
    rc, out = glance(endpoint, 'cache-clear')
    c.equal(rc, 0, 'glance cache-clear: ' + out[-500:])
    c.equal(glance_cached(), [], 'glance cache-clear: the cache is empty')
    deadline = time.time() + 20
    while list(gc.cache.list_cached_nodes(first)) and time.time() < deadline:
        time.sleep(0.2)
    c.equal(list(gc.cache.list_cached_nodes(first)), [], 'no node listed once cleared')

    # the cache API is admin-only
    member = glanceclient.Client('2', endpoint=endpoint, identity_headers={
        'X-Project-Id': 'other', 'X-Roles': 'member', 'X-Auth-Token': 'notused'})
    try:
        member.cache.list()
        c.fail('a member lists the cache', 'allowed')
    except gc_exc.HTTPForbidden:
        c.ok('a member is refused the cache API (403)')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
