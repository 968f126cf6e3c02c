#!/usr/bin/env python3
"""glint compatibility: the metadata definitions catalog through the standard clients.

python-glanceclient's ``metadefs_*`` controllers (which validate every body against the
``/v2/schemas/metadefs/*`` documents glint serves, as they do against Glance's), the
``glance md-*`` CLI, ``openstack image metadef …`` and openstacksdk's ``metadef_*`` calls:
namespaces (create, list with filters, show with ``resource_type`` prefixing, update and
rename, delete, protected refusing delete), objects, properties, tags (several at once, one,
rename, delete all), resource types and their associations.

Env: GLINT_ENDPOINT, GLINT_SCRATCH. glint runs without auth: the caller is admin
(``metadef_admin``).
"""

import json
import os
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_common as cc  # noqa: E402

cc.ensure_venv(['glanceclient', 'openstack', 'openstackclient'])

import glanceclient  # noqa: E402
from glanceclient import exc as gc_exc  # noqa: E402
import openstack  # noqa: E402

warnings.filterwarnings('ignore', category=DeprecationWarning)

SUITE = 'metadefs'
TIMEOUT = 300


def glanceclient_calls(c, gc):
    ns = cc.unique_name('gc-ns')
    created = c.step('metadefs_namespace.create', gc.metadefs_namespace.create,
                     namespace=ns, display_name='Glint test', description='made by glanceclient',
                     visibility='public', protected=False)
    c.on_exit(gc.metadefs_namespace.delete, ns)
    c.equal(created['namespace'], ns, 'created namespace')
    c.equal(created['visibility'], 'public', 'visibility kept')

    listed = [n['namespace'] for n in gc.metadefs_namespace.list()]
    c.check(ns in listed, 'namespace listed')
    public = [n['namespace'] for n in gc.metadefs_namespace.list(filters={'visibility': 'public'})]
    c.check(ns in public, 'namespace listed with visibility=public')

    # properties: JSON-schema fragments
    prop = c.step('metadefs_property.create', gc.metadefs_property.create, ns,
                  name='cpu_policy', title='CPU policy', type='string',
                  enum=['shared', 'dedicated'], description='how vCPUs are pinned')
    c.equal(prop['enum'], ['shared', 'dedicated'], 'property enum kept')
    c.step('metadefs_property.create (integer with bounds)', gc.metadefs_property.create, ns,
           name='cores', title='Cores', type='integer', minimum=1, maximum=64)
    names = sorted(p['name'] for p in gc.metadefs_property.list(ns))
    c.equal(names, ['cores', 'cpu_policy'], 'properties listed')
    got = gc.metadefs_property.get(ns, 'cores')
    c.equal((got['minimum'], got['maximum']), (1, 64), 'integer bounds kept')
    c.step('metadefs_property.update', gc.metadefs_property.update, ns, 'cores',
           name='cores', title='Cores', type='integer', minimum=1, maximum=128)
    c.equal(gc.metadefs_property.get(ns, 'cores')['maximum'], 128, 'property updated')
    try:
        gc.metadefs_property.create(ns, name='bad', title='Bad', type='no-such-type')
        c.fail('a property of an unknown type', 'accepted')
    except (gc_exc.HTTPBadRequest, Exception) as e:  # warlock refuses before sending, too
        c.ok('a property of an unknown type is refused (%s)' % type(e).__name__)

    # objects
    obj = c.step('metadefs_object.create', gc.metadefs_object.create, ns,
                 name='CPU Limits', description='quota knobs', required=['quota:cpu_shares'],
                 properties={'quota:cpu_shares': {'title': 'Shares', 'type': 'integer'}})
    c.equal(obj['name'], 'CPU Limits', 'object created')
    objs = [o['name'] for o in gc.metadefs_object.list(ns)]
    c.equal(objs, ['CPU Limits'], 'objects listed')
    got = gc.metadefs_object.get(ns, 'CPU Limits')
    c.equal(got['required'], ['quota:cpu_shares'], 'object required kept')
    c.step('metadefs_object.update', gc.metadefs_object.update, ns, 'CPU Limits',
           name='CPU Limits', description='updated')
    c.equal(gc.metadefs_object.get(ns, 'CPU Limits')['description'], 'updated', 'object updated')

    # tags
    # a generator: nothing is sent until it is iterated
    made = c.step('metadefs_tag.create_multiple',
                  lambda: list(gc.metadefs_tag.create_multiple(ns, tags=['alpha', 'beta'])))
    c.equal(sorted(t['name'] for t in made), ['alpha', 'beta'], 'tags created at once')
    c.step('metadefs_tag.create', gc.metadefs_tag.create, ns, 'gamma')
    tags = sorted(t['name'] for t in gc.metadefs_tag.list(ns))
    c.equal(tags, ['alpha', 'beta', 'gamma'], 'tags listed')
    c.step('metadefs_tag.update (rename)', gc.metadefs_tag.update, ns, 'gamma', name='delta')
    tags = sorted(t['name'] for t in gc.metadefs_tag.list(ns))
    c.equal(tags, ['alpha', 'beta', 'delta'], 'tag renamed')
    try:
        gc.metadefs_tag.create(ns, 'alpha')
        c.fail('a duplicate tag', 'accepted')
    except gc_exc.HTTPConflict:
        c.ok('a duplicate tag: 409')
    c.step('metadefs_tag.delete', gc.metadefs_tag.delete, ns, 'delta')
    c.step('metadefs_tag.delete_all', gc.metadefs_tag.delete_all, ns)
    c.equal(list(gc.metadefs_tag.list(ns)), [], 'all tags deleted')

    # resource types and associations
    rts = [r['name'] for r in gc.metadefs_resource_type.list()]
    for std in ['OS::Glance::Image', 'OS::Cinder::Volume', 'OS::Nova::Flavor',
                'OS::Nova::Aggregate', 'OS::Nova::Server']:
        c.check(std in rts, 'standard resource type %s present' % std)
    c.step('metadefs_resource_type.associate', gc.metadefs_resource_type.associate, ns,
           name='OS::Glance::Image', prefix='hw_', properties_target='image')
    assoc = [a['name'] for a in gc.metadefs_resource_type.get(ns)]
    c.equal(assoc, ['OS::Glance::Image'], 'association listed')
    by_rt = [n['namespace'] for n in
             gc.metadefs_namespace.list(filters={'resource_types': ['OS::Glance::Image']})]
    c.check(ns in by_rt, 'namespace listed by resource type')
    shown = gc.metadefs_namespace.get(ns, resource_type='OS::Glance::Image')
    c.check('hw_cores' in shown.get('properties', {}),
            'show with resource_type prefixes property names', shown.get('properties'))
    c.step('metadefs_resource_type.deassociate', gc.metadefs_resource_type.deassociate, ns,
           'OS::Glance::Image')
    c.equal(list(gc.metadefs_resource_type.get(ns)), [], 'association removed')

    # rename, protected, delete
    renamed = ns + '-renamed'
    c.step('metadefs_namespace.update (rename)', gc.metadefs_namespace.update, ns,
           namespace=renamed, protected=True)
    c.on_exit(gc.metadefs_namespace.delete, renamed)
    c.on_exit(lambda: gc.metadefs_namespace.update(renamed, namespace=renamed, protected=False))
    c.equal(gc.metadefs_namespace.get(renamed)['namespace'], renamed, 'namespace renamed')
    try:
        gc.metadefs_namespace.delete(renamed)
        c.fail('delete of a protected namespace', 'accepted')
    except gc_exc.HTTPForbidden:
        c.ok('delete of a protected namespace: 403')
    gc.metadefs_namespace.update(renamed, namespace=renamed, protected=False)
    c.step('metadefs_namespace.delete', gc.metadefs_namespace.delete, renamed)
    try:
        gc.metadefs_namespace.get(renamed)
        c.fail('namespace after delete', 'still there')
    except gc_exc.HTTPNotFound:
        c.ok('deleted namespace: 404')


def glance_cli(c, endpoint):
    cli = os.path.join(os.path.dirname(sys.executable), 'glance')
    base = [cli, '--os-image-url', endpoint, '--os-auth-token', 'x']

    def glance(*args):
        p = subprocess.run(base + list(args), capture_output=True, text=True, timeout=TIMEOUT)
        return p.returncode, p.stdout + p.stderr

    ns = cc.unique_name('cli-ns')
    rc, out = glance('md-namespace-create', ns, '--visibility', 'public',
                     '--description', 'made by the glance CLI')
    c.check(rc == 0, 'glance md-namespace-create', out)
    rc, out = glance('md-namespace-list')
    c.check(rc == 0 and ns in out, 'glance md-namespace-list', out)
    rc, out = glance('md-namespace-update', ns, '--display-name', 'CLI')
    c.check(rc == 0, 'glance md-namespace-update', out)
    rc, out = glance('md-property-create', ns, '--name', 'speed', '--title', 'Speed',
                     '--type', 'integer', '--schema', json.dumps({'minimum': 0}))
    c.check(rc == 0, 'glance md-property-create', out)
    rc, out = glance('md-object-create', ns, '--name', 'Disk',
                     '--schema', json.dumps({'description': 'disk knobs', 'properties': {
                         'iops': {'type': 'integer', 'title': 'IOPS'}}}))
    c.check(rc == 0, 'glance md-object-create', out)
    rc, out = glance('md-tag-create-multiple', ns, '--names', 'one,two')
    c.check(rc == 0, 'glance md-tag-create-multiple', out)
    rc, out = glance('md-resource-type-associate', ns, '--name', 'OS::Nova::Flavor',
                     '--prefix', 'hw:')
    c.check(rc == 0, 'glance md-resource-type-associate', out)
    rc, out = glance('md-namespace-resource-type-list', ns)
    c.check(rc == 0 and 'OS::Nova::Flavor' in out, 'glance md-namespace-resource-type-list', out)
    rc, out = glance('md-namespace-show', ns)
    c.check(rc == 0 and 'speed' in out and 'Disk' in out and 'one' in out,
            'glance md-namespace-show lists properties, objects, tags', out)
    rc, out = glance('md-resource-type-list')
    c.check(rc == 0 and 'OS::Glance::Image' in out, 'glance md-resource-type-list', out)
    rc, out = glance('md-namespace-delete', ns)
    c.check(rc == 0, 'glance md-namespace-delete', out)


def osc_cli(c, endpoint):
    cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    base = [cli, '--os-auth-type', 'none', '--os-endpoint', endpoint,
            '--os-image-api-version', '2']

    def osc(what, *args):
        p = subprocess.run(base + list(args), env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
        if p.returncode != 0:
            c.fail(what, 'openstack %s exited %d: %s' % (
                ' '.join(args), p.returncode, (p.stderr or p.stdout).strip()[-2000:]))
        c.ok(what)
        return p.stdout

    ns = cc.unique_name('osc-ns')
    osc('image metadef namespace create', 'image', 'metadef', 'namespace', 'create',
        '--public', '--description', 'made by osc', ns)
    listed = json.loads(osc('image metadef namespace list', 'image', 'metadef', 'namespace',
                            'list', '-f', 'json'))
    c.check(any(n.get('Namespace', n.get('namespace')) == ns for n in listed),
            'namespace in osc list', listed)
    osc('image metadef namespace set', 'image', 'metadef', 'namespace', 'set',
        '--display-name', 'OSC', ns)
    shown = json.loads(osc('image metadef namespace show', 'image', 'metadef', 'namespace',
                           'show', '-f', 'json', ns))
    c.equal(shown.get('display_name'), 'OSC', 'display name set through osc')
    osc('image metadef property create', 'image', 'metadef', 'property', 'create',
        '--name', 'ram', '--title', 'RAM', '--type', 'integer',
        '--schema', json.dumps({'minimum': 0}), ns)
    props = json.loads(osc('image metadef property list', 'image', 'metadef', 'property',
                           'list', '-f', 'json', ns))
    c.check(any('ram' in json.dumps(p) for p in props), 'property in osc list', props)
    osc('image metadef object create', 'image', 'metadef', 'object', 'create',
        '--namespace', ns, 'Memory')
    osc('image metadef resource type association create', 'image', 'metadef', 'resource',
        'type', 'association', 'create', ns, 'OS::Cinder::Volume')
    types = json.loads(osc('image metadef resource type list', 'image', 'metadef', 'resource',
                           'type', 'list', '-f', 'json'))
    c.check(any('OS::Cinder::Volume' in json.dumps(t) for t in types),
            'resource types in osc list', types)
    osc('image metadef namespace delete', 'image', 'metadef', 'namespace', 'delete', ns)


def sdk_calls(c, endpoint):
    conn = openstack.connection.Connection(auth_type='none', image_endpoint_override=endpoint,
                                           image_api_version='2')
    img = conn.image
    ns = cc.unique_name('sdk-ns')
    created = c.step('create_metadef_namespace', img.create_metadef_namespace,
                     namespace=ns, visibility='public', description='made by openstacksdk')
    c.on_exit(img.delete_metadef_namespace, ns)
    c.equal(created.namespace, ns, 'sdk namespace created')
    c.check(any(n.namespace == ns for n in img.metadef_namespaces()), 'sdk namespaces list')
    c.step('update_metadef_namespace', img.update_metadef_namespace, ns,
           namespace=ns, display_name='SDK')
    c.equal(img.get_metadef_namespace(ns).display_name, 'SDK', 'sdk namespace updated')
    c.step('create_metadef_property', img.create_metadef_property, ns,
           name='disk_bus', title='Disk bus', type='string', enum=['virtio', 'scsi'])
    c.check(any(p.name == 'disk_bus' for p in img.metadef_properties(ns)),
            'sdk properties list')
    c.equal(img.get_metadef_property('disk_bus', ns).enum, ['virtio', 'scsi'],
            'sdk property enum')
    c.step('create_metadef_object', img.create_metadef_object, ns, name='Watchdog')
    c.check(any(o.name == 'Watchdog' for o in img.metadef_objects(ns)), 'sdk objects list')
    rts = [r.name for r in img.metadef_resource_types()]
    c.check('OS::Nova::Server' in rts, 'sdk resource types list')
    c.step('create_metadef_resource_type_association',
           img.create_metadef_resource_type_association, ns, name='OS::Nova::Server')
    c.check(any(a.name == 'OS::Nova::Server'
                for a in img.metadef_resource_type_associations(ns)),
            'sdk associations list')
    c.step('delete_metadef_resource_type_association',
           img.delete_metadef_resource_type_association, 'OS::Nova::Server', ns)
    c.step('delete_all_metadef_properties', img.delete_all_metadef_properties, ns)
    c.equal(list(img.metadef_properties(ns)), [], 'sdk properties deleted')
    c.step('delete_metadef_namespace', img.delete_metadef_namespace, ns)


def main(c):
    endpoint, _scratch = cc.env_config()
    gc = glanceclient.Client('2', endpoint=endpoint, token='x')
    glanceclient_calls(c, gc)
    glance_cli(c, endpoint)
    osc_cli(c, endpoint)
    sdk_calls(c, endpoint)


if __name__ == '__main__':
    cc.Checker(SUITE).run(main)
