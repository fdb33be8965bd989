"""placeholder"""
def config_files(target, manifest, folder):
    return {}
