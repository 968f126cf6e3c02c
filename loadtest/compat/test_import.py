#!/usr/bin/env python3
"""glint compatibility: interoperable image import (glance-direct), as the clients drive it.

- python-glanceclient: ``images.stage`` then ``images.image_import`` (``glance-direct``);
  the shell's ``image-create-via-import`` (create, stage and import in one command), and
  ``image-stage`` / ``image-import`` on an image made before;
- openstacksdk: ``create_image(use_import=True)`` (create, ``stage``, ``import_image``);
- the ``openstack image create --import`` command.

With ``GLINT_WEB_SOURCE_HOST`` set (an address glint's ``allowed_networks`` lets through;
the script serves the file there with Python's ``http.server``), ``web-download`` too:
``images.image_import(method='web-download', uri=…)``, ``glance image-create-via-import
--import-method web-download --uri …`` and openstacksdk ``create_image(import_method=
'web-download', uri=…)``; a source on 127.0.0.1 (loopback, refused by default) fails the
task and leaves the image ``queued``.

Each image must become ``active`` with the bytes and the hashes of the file, and its import
task must be ``success``. ``GET /v2/info/import`` lists ``glance-direct``. A stage of an
image that is not ``queued`` is a 409 and an import of an image not staged is a 409.

Env: GLINT_ENDPOINT, GLINT_SCRATCH.
"""

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'openstack', 'openstackclient'])

import glanceclient  # noqa: E402
from glanceclient import exc as gc_exc  # noqa: E402
import openstack  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'import'
SIZE = 5 * cc.MiB + 321
TIMEOUT = 120


def cli(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith('OS_')}


def glance(endpoint, *args, stdin=None):
    """The ``glance`` shell, noauth (an admin). Its stdin is `stdin`, else a terminal (the
    shell takes any other stdin for image data, and refuses it beside --file or --uri)."""
    pty = None
    if stdin is None:
        # both ends stay open while the shell runs (a pty without its master is no terminal)
        pty = os.openpty()
        stdin = pty[1]
    try:
        p = subprocess.run([cli('glance'), '--os-image-url', endpoint, '--os-auth-token', 'x',
                            '--os-image-api-version', '2', *args], stdin=stdin,
                           env=clean_env(), capture_output=True, timeout=TIMEOUT)
    finally:
        if pty is not None:
            os.close(pty[0])
            os.close(pty[1])
    return p.returncode, (p.stdout + p.stderr).decode(errors='replace')


def osc(endpoint, *args):
    p = subprocess.run([cli('openstack'), '--os-auth-type', 'none', '--os-endpoint', endpoint,
                        '--os-image-api-version', '2', *args],
                       env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout + p.stderr


def wait_active(gc, image_id, c, what):
    """The image once active with its import over (the task releases the lock after the
    image becomes active, as in Glance)."""
    deadline = time.time() + TIMEOUT
    img = gc.images.get(image_id)
    while time.time() < deadline and (img.status != 'active' or 'os_glance_import_task' in img):
        time.sleep(0.2)
        img = gc.images.get(image_id)
    c.equal(img.status, 'active', what + ': the image becomes active')
    return img


def imported_intact(gc, image_id, path, c, what):
    img = wait_active(gc, image_id, c, what)
    _, md5, sha512 = cc.file_hashes(path)
    c.equal((img.size, img.checksum, img.os_hash_algo, img.os_hash_value),
            (SIZE, md5, 'sha512', sha512), what + ': size and hashes of the file')
    got = os.path.join(os.path.dirname(path), image_id + '.out')
    with open(got, 'wb') as f:
        for chunk in gc.images.data(image_id):
            f.write(chunk)
    c.check(cc.files_equal(path, got), what + ': the bytes downloaded are the file')
    # get_associated_image_tasks needs v2.12, which Glance lists only with multi-store
    _, body = gc.http_client.get('/v2/images/%s/tasks' % image_id)
    tasks = body['tasks']
    c.check([t['status'] for t in tasks] == ['success'],
            what + ': its one import task succeeded', repr(tasks))
    c.check('os_glance_import_task' not in img and 'os_glance_stage_host' not in img,
            what + ': no import bookkeeping left on the image', repr(dict(img)))


def main(c):
    endpoint, scratch = cc.env_config()
    path = os.path.join(scratch, 'import.bin')
    cc.make_random_file(path, SIZE)
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')

    info = gc.images.get_import_info()
    c.check('glance-direct' in info['import-methods']['value'],
            'glanceclient get_import_info lists glance-direct', repr(info))

    # python-glanceclient's API: stage, then import
    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    c.on_exit(gc.images.delete, img.id)
    try:
        gc.images.image_import(img.id, method='glance-direct')
        c.fail('glanceclient import of an image not staged', 'accepted')
    except gc_exc.HTTPConflict as e:
        c.check('staged' in str(e), 'glanceclient import before the stage: 409', str(e))
    with open(path, 'rb') as f:
        c.step('glanceclient images.stage', gc.images.stage, img.id, f)
    staged = gc.images.get(img.id)
    c.equal((staged.status, staged.size), ('uploading', SIZE),
            'glanceclient: a staged image is uploading with its size')
    with open(path, 'rb') as f:
        try:
            gc.images.stage(img.id, f)
            c.fail('glanceclient stage of an image already staged', 'accepted')
        except gc_exc.HTTPConflict as e:
            c.ok('glanceclient stage of an image already staged: 409 (%s)' % str(e)[:60])
    c.step('glanceclient images.image_import glance-direct', gc.images.image_import,
           img.id, method='glance-direct')
    imported_intact(gc, img.id, path, c, 'glanceclient stage + import')

    # the glance shell
    name = cc.unique_name(SUITE)
    # the data on stdin (the shell counts any stdin that is not a terminal as data, so it
    # refuses --file beside one)
    with open(path, 'rb') as data:
        rc, out = glance(endpoint, 'image-create-via-import', '--name', name,
                         '--disk-format', 'raw', '--container-format', 'bare',
                         '--import-method', 'glance-direct', stdin=data)
    c.check(rc == 0, 'glance image-create-via-import --import-method glance-direct', out[-2000:])
    made = [i for i in gc.images.list(filters={'name': name})]
    for i in made:
        c.on_exit(gc.images.delete, i.id)
    c.check(len(made) == 1, 'glance image-create-via-import made one image', repr(made))
    imported_intact(gc, made[0].id, path, c, 'glance image-create-via-import')
    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    c.on_exit(gc.images.delete, img.id)
    rc, out = glance(endpoint, 'image-stage', '--file', path, img.id)
    c.check(rc == 0, 'glance image-stage', out[-2000:])
    rc, out = glance(endpoint, 'image-import', '--import-method', 'glance-direct', img.id)
    c.check(rc == 0, 'glance image-import --import-method glance-direct', out[-2000:])
    imported_intact(gc, img.id, path, c, 'glance image-stage + image-import')

    # openstacksdk
    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    made = c.step('sdk create_image(use_import=True)', conn.image.create_image,
                  name=cc.unique_name(SUITE), filename=path, disk_format='raw',
                  container_format='bare', use_import=True)
    c.on_exit(conn.image.delete_image, made.id)
    imported_intact(gc, made.id, path, c, 'sdk create_image(use_import=True)')
    # and step by step: create, stage_image, import_image
    img = c.step('sdk create_image (no data)', conn.image.create_image,
                 name=cc.unique_name(SUITE), disk_format='raw', container_format='bare')
    c.on_exit(conn.image.delete_image, img.id)
    c.step('sdk stage_image', conn.image.stage_image, img, filename=path)
    c.equal(conn.image.get_image(img.id).status, 'uploading', 'sdk: staged image is uploading')
    c.step('sdk import_image glance-direct', conn.image.import_image, img,
           method='glance-direct')
    imported_intact(gc, img.id, path, c, 'sdk stage_image + import_image')

    # the openstack CLI
    name = cc.unique_name(SUITE)
    rc, out = osc(endpoint, 'image', 'create', '--import', '--disk-format', 'raw',
                  '--container-format', 'bare', '--file', path, name)
    c.check(rc == 0, 'openstack image create --import', out[-2000:])
    made = [i for i in gc.images.list(filters={'name': name})]
    for i in made:
        c.on_exit(gc.images.delete, i.id)
    c.check(len(made) == 1, 'openstack image create --import made one image', repr(made))
    imported_intact(gc, made[0].id, path, c, 'openstack image create --import')

    web_download(c, gc, endpoint, path)


def serve(host, directory):
    """Serves `directory` over HTTP on `host` (a free port) in a thread; the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return 'http://%s:%d' % (host, server.server_address[1])


def web_download(c, gc, endpoint, path):
    """web-download through the clients, from a source the filters allow; and one they do
    not."""
    host = os.environ.get('GLINT_WEB_SOURCE_HOST')
    if not host:
        return
    src = serve(host, os.path.dirname(path)) + '/' + os.path.basename(path)
    info = gc.images.get_import_info()
    c.check('web-download' in info['import-methods']['value'],
            'get_import_info lists web-download', repr(info))

    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    c.on_exit(gc.images.delete, img.id)
    c.step('glanceclient images.image_import web-download', gc.images.image_import,
           img.id, method='web-download', uri=src)
    imported_intact(gc, img.id, path, c, 'glanceclient web-download')

    name = cc.unique_name(SUITE)
    rc, out = glance(endpoint, 'image-create-via-import', '--name', name,
                     '--disk-format', 'raw', '--container-format', 'bare',
                     '--import-method', 'web-download', '--uri', src)
    c.check(rc == 0, 'glance image-create-via-import --import-method web-download', out[-2000:])
    made = [i for i in gc.images.list(filters={'name': name})]
    for i in made:
        c.on_exit(gc.images.delete, i.id)
    c.check(len(made) == 1, 'glance image-create-via-import (web-download) made one image')
    imported_intact(gc, made[0].id, path, c, 'glance image-create-via-import web-download')

    conn = openstack.connection.Connection(
        auth_type='none', image_endpoint_override=endpoint, image_api_version='2')
    made = c.step('sdk create_image(import_method=web-download)', conn.image.create_image,
                  name=cc.unique_name(SUITE), disk_format='raw', container_format='bare',
                  use_import=True, import_method='web-download', uri=src)
    c.on_exit(conn.image.delete_image, made.id)
    imported_intact(gc, made.id, path, c, 'sdk web-download')

    # Glance's legacy import task (tasks.create), from the same source, by an admin of a
    # project (the task's owner: the task schema wants a string)
    admin = glanceclient.Client('2', endpoint=endpoint, token='x')
    admin.http_client.session.headers.update({'X-Project-Id': 'p-admin', 'X-Roles': 'admin'})
    task = c.step('glanceclient tasks.create import', admin.tasks.create, type='import', input={
        'import_from': src, 'import_from_format': 'raw',
        'image_properties': {'name': cc.unique_name(SUITE), 'container_format': 'bare'}})
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and task.status not in ('success', 'failure'):
        time.sleep(0.2)
        task = admin.tasks.get(task.id)
    c.equal(task.status, 'success', 'glanceclient legacy import task: success')
    c.on_exit(gc.images.delete, task.result['image_id'])
    imported_intact(gc, task.result['image_id'], path, c, 'glanceclient legacy import task')

    # a loopback source: the import is accepted (Glance's lists pass) but the task fails
    # before anything is fetched, and the image is queued again
    bad = serve('127.0.0.1', os.path.dirname(path)) + '/' + os.path.basename(path)
    img = gc.images.create(name=cc.unique_name(SUITE), disk_format='raw',
                           container_format='bare')
    c.on_exit(gc.images.delete, img.id)
    c.step('glanceclient web-download from loopback is accepted', gc.images.image_import,
           img.id, method='web-download', uri=bad)
    deadline = time.time() + TIMEOUT
    tasks = []
    while time.time() < deadline:
        _, body = gc.http_client.get('/v2/images/%s/tasks' % img.id)
        tasks = body['tasks']
        if tasks and tasks[0]['status'] in ('success', 'failure'):
            break
        time.sleep(0.2)
    c.check(tasks and tasks[0]['status'] == 'failure'
            and 'forbidden address' in tasks[0]['message'],
            'web-download from loopback: the task fails naming the address', repr(tasks))
    got = gc.images.get(img.id)
    c.equal(got.status, 'queued', 'web-download from loopback: the image is queued again')


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
