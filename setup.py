"""Package metadata comes from settings.ini (nbdev 2 convention); edit there, not here."""
from configparser import ConfigParser
import shlex
import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

requirements = shlex.split(cfg.get('requirements', ''))
# optional extras: every `<name>_requirements` key of settings.ini (dev, bench, datasets, serve, ...)
extras = {key[:-len('_requirements')]: shlex.split(value) for key, value in cfg.items()
          if key.endswith('_requirements') and key != 'requirements'}
console_scripts = cfg.get('console_scripts', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache Software License 2.0',
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require=extras,
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
                  # spaCy finds the `cascade_student` pipeline component here: nlp.add_pipe("cascade_student", ...)
                  'spacy_factories': [f"cascade_student = {cfg['lib_name']}.spacy_component:make_cascade_student"]},
)
